"""predstore: a columnar prediction store for PyTorch Lightning.

Predictions go to Parquet (ids, names, scalars, small vectors) and sharded,
compressed Zarr arrays (logits, embeddings, masks), keyed by each sample's
global dataset index, and become visible atomically when the store manifest
commits. See ``predstore.open``, ``predstore.StoreWriter`` and
``predstore.PredictionWriter``.
"""

from __future__ import annotations

import os

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
from predstore.format.fs import LocalFileSystem
from predstore.format.manifest import StoreManifest
from predstore.read.store import Store, open
from predstore.write.keys import KeySpec
from predstore.write.store_writer import StoreWriter

__version__ = "0.1.0"


def finalize(path: str | os.PathLike[str]) -> StoreManifest:
    """Commit the rows that the ranks of unfinished writes at ``path`` committed.

    Example::

        import predstore

        manifest = predstore.finalize("preds.pstore")  # after a job died, or after all ranks closed
        print(manifest.rows, manifest.coverage)

    Returns the store manifest; a store with nothing left to finalize is
    returned as it is.
    """
    from predstore.format.commit import finalize as _finalize

    return _finalize(LocalFileSystem(path))


__all__ = [
    "CommitConflictError",
    "CorruptStoreError",
    "CoverageError",
    "FormatVersionError",
    "InvalidBatchError",
    "KeySpec",
    "MissingRowsError",
    "PredstoreError",
    "SchemaError",
    "Store",
    "StoreExistsError",
    "StoreNotCommittedError",
    "StoreWriter",
    "UnknownKeyError",
    "__version__",
    "finalize",
    "open",
]
