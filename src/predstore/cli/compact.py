"""Compaction: a store's rows rewritten into few parts, as one commit.

A long multi-node job that commits every few minutes leaves thousands of
small parts. :func:`compact` reads the store's visible rows in index order
and writes them again, as one write that replaces the store in one commit
(an overwrite: readers see the old parts or the new ones, never a mix, and
the old files stay for ``retention`` seconds for readers that opened the
store before). Keys keep their dtype, shape and storage; duplicates are
dropped (readers never saw them); nulls stay nulls (a key with nulls reads
as a masked array, which the writer stores as nulls again); names,
dataloaders and the coverage figures' expected lengths are kept.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from predstore.format.commit import RETENTION
from predstore.format.manifest import StoreManifest
from predstore.read.store import Store
from predstore.read.store import open as open_store
from predstore.write.keys import KeySpec
from predstore.write.store_writer import StoreWriter

BATCH_ROWS = 4096


def compact(
    path: str | os.PathLike[str],
    *,
    part_rows: int | None = None,
    retention: float = RETENTION,
) -> StoreManifest:
    """Rewrite the store at ``path`` into few parts (one per ``part_rows`` rows, if given); one commit.

    Example::

        from predstore.cli.compact import compact

        manifest = compact("preds.pstore")
        print(len(manifest.parts))

    A store of one part is returned as it is. Run it when no writer is
    writing to the store: a write that commits meanwhile makes this commit
    fail (``CommitConflictError``) and leaves the store as it was.
    """
    store = open_store(path)
    if len(store.manifest.parts) <= 1:
        return store.manifest
    keys = {k: KeySpec(storage=s.storage, dtype=s.dtype) for k, s in store.schema.keys.items()}
    expected = {dl: c.expected for dl, c in store.coverage.items() if c.expected is not None}
    writer = StoreWriter(
        path,
        mode="overwrite",
        keys=keys,
        retention=retention,
        expected=expected,
        commit_interval=None,
        provenance={"compacted_from": [w.write_id for w in store.manifest.writes]},
        part_bytes=1 << 40 if part_rows is None else 512 << 20,
    )
    with writer:
        written = 0
        for dl in sorted(store.coverage):
            for batch in _batches(store.indices(dl), BATCH_ROWS):
                values, names = _rows(store, batch, dl)
                writer.write(values, batch, names=names, dataloader_idx=dl)
                written += len(batch)
                if part_rows is not None and written >= part_rows:
                    writer.commit()
                    written = 0
    return open_store(path).manifest


def _batches(indices: np.ndarray[Any, Any], size: int) -> list[np.ndarray[Any, Any]]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def _rows(
    store: Store, indices: np.ndarray[Any, Any], dl: int
) -> tuple[dict[str, Any], list[str | None] | None]:
    values = {k: store.read(k, indices, dataloader_idx=dl) for k in store.schema.keys}
    if any(store.schema.keys[k].dtype == "string" for k in values):
        values = {
            k: v.tolist() if store.schema.keys[k].dtype == "string" else v
            for k, v in values.items()
        }
    names = None
    if store.schema.names:
        names = store.rows.names(store.rows.locate(indices, dl))
    return values, names
