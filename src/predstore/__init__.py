"""predstore: a columnar prediction store for PyTorch Lightning.

Predictions go to Parquet (ids, names, scalars, small vectors) and sharded,
compressed Zarr arrays (logits, embeddings, masks), keyed by each sample's
global dataset index, and become visible atomically when the store manifest
commits. See ``predstore.open``, ``predstore.StoreWriter`` and
``predstore.PredictionWriter``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from predstore.errors import (
    CommitConflictError,
    ConfigError,
    CorruptRunError,
    CorruptStoreError,
    CoverageError,
    FormatVersionError,
    InvalidBatchError,
    MissingRowsError,
    OutOfRangeError,
    PredstoreError,
    QueryError,
    RegistryError,
    SchemaError,
    StoreExistsError,
    StoreNotCommittedError,
    StorePermissionError,
    UnknownKeyError,
    UnknownRunError,
)
from predstore.format.commit import RETENTION
from predstore.format.fs import filesystem_for
from predstore.format.manifest import StoreManifest
from predstore.read.store import Store, open
from predstore.write.keys import KeySpec
from predstore.write.options import WriteOptions
from predstore.write.pending import pending
from predstore.write.store_writer import StoreWriter

if TYPE_CHECKING:
    from predstore.datasets.map_style import PredictionDataset
    from predstore.datasets.sequential import SequentialPredictionDataset
    from predstore.lightning.freezer import Freezer
    from predstore.lightning.prediction_writer import PredictionWriter
    from predstore.lightning.registry_logger import RegistryLogger

__version__ = "0.1.0"

# Lightning and torch take seconds to import: the callbacks and the datasets load on first
# use, so that `import predstore` and every `predstore` command stay fast.
_LAZY = {
    "PredictionWriter": "predstore.lightning.prediction_writer",
    "Freezer": "predstore.lightning.freezer",
    "RegistryLogger": "predstore.lightning.registry_logger",
    "PredictionDataset": "predstore.datasets.map_style",
    "SequentialPredictionDataset": "predstore.datasets.sequential",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'predstore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def finalize(
    path: str | os.PathLike[str],
    *,
    retention: float = RETENTION,
    allow_shrink: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> StoreManifest:
    """Commit the rows that the ranks of unfinished writes at ``path`` committed.

    Args:
        path: the store: a directory or an object store URL.
        retention: seconds the files of a store this commit replaces stay for readers.
        allow_shrink: allow an unfinished overwrite that leaves fewer rows than
            the store has (refused by default).
        storage_options: credentials and endpoint of an object store, when
            ``path`` is a URL (default: the standard environment variables).

    Example::

        import predstore

        manifest = predstore.finalize("preds.pstore")  # after a job died, or after all ranks closed
        print(manifest.rows, manifest.coverage)

    Returns the store manifest; a store with nothing left to finalize is
    returned as it is. Only finalize a store whose writers have stopped. An
    unfinished overwrite that would leave fewer rows than the store has is
    refused unless ``allow_shrink=True``.
    """
    from predstore.format.commit import finalize as _finalize

    fs = filesystem_for(path, storage_options=storage_options)
    return _finalize(fs, retention=retention, allow_shrink=allow_shrink)


def vacuum(
    path: str | os.PathLike[str],
    *,
    retention: float = RETENTION,
    discard_unfinished: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Delete the files no reader needs any more; return the write ids deleted.

    Args:
        path: the store: a directory or an object store URL.
        retention: seconds a replaced write's files stay for readers that opened it before.
        discard_unfinished: also delete unfinished writes whose ranks committed
            rows (kept by default, for ``finalize`` or ``mode="resume"``).
        storage_options: credentials and endpoint of an object store, when
            ``path`` is a URL (default: the standard environment variables).

    Example::

        import predstore

        predstore.vacuum("preds.pstore", retention=0)  # no reader holds the replaced store

    Those are writes an overwrite replaced more than ``retention`` seconds ago,
    unfinished writes without committed rows untouched as long, and commit
    records older than ``retention`` that recovery does not need. Unfinished
    writes whose ranks committed rows are kept unless
    ``discard_unfinished=True``.
    """
    from predstore.format.commit import vacuum as _vacuum

    fs = filesystem_for(path, storage_options=storage_options)
    return _vacuum(fs, retention=retention, discard_unfinished=discard_unfinished)


def upgrade(
    path: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
) -> StoreManifest:
    """Rewrite a store written by an older predstore in the current format, as one commit.

    Args:
        path: the store: a directory or an object store URL.
        storage_options: credentials and endpoint of an object store, when
            ``path`` is a URL (default: the standard environment variables).

    Example::

        import predstore

        manifest = predstore.upgrade("preds.pstore")  # a 0.1 store then takes appends again
        print(manifest.format_version)

    Stores of older formats read as they are; writing to one needs this
    first. Data files are not rewritten; a store of the current format is
    returned as it is.
    """
    from predstore.format.commit import upgrade as _upgrade

    return _upgrade(filesystem_for(path, storage_options=storage_options))


__all__ = [
    "CommitConflictError",
    "ConfigError",
    "CorruptRunError",
    "CorruptStoreError",
    "CoverageError",
    "FormatVersionError",
    "Freezer",
    "InvalidBatchError",
    "KeySpec",
    "MissingRowsError",
    "OutOfRangeError",
    "PredictionDataset",
    "PredictionWriter",
    "PredstoreError",
    "QueryError",
    "RegistryError",
    "RegistryLogger",
    "SchemaError",
    "SequentialPredictionDataset",
    "Store",
    "StoreExistsError",
    "StoreNotCommittedError",
    "StorePermissionError",
    "StoreWriter",
    "UnknownKeyError",
    "UnknownRunError",
    "WriteOptions",
    "__version__",
    "finalize",
    "open",
    "pending",
    "upgrade",
    "vacuum",
]
