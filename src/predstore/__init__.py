"""predstore: a columnar prediction store for PyTorch Lightning."""

from predstore.errors import (
    CommitConflictError,
    CorruptStoreError,
    CoverageError,
    FormatVersionError,
    InvalidBatchError,
    MissingRowsError,
    PredstoreError,
    SchemaError,
    StoreExistsError,
    StoreNotCommittedError,
    UnknownKeyError,
)

__version__ = "0.1.0"

__all__ = [
    "CommitConflictError",
    "CorruptStoreError",
    "CoverageError",
    "FormatVersionError",
    "InvalidBatchError",
    "MissingRowsError",
    "PredstoreError",
    "SchemaError",
    "StoreExistsError",
    "StoreNotCommittedError",
    "UnknownKeyError",
    "__version__",
]
