"""Which samples of a dataset a resumed write still has to predict."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from predstore.format.commit import load_store_manifest
from predstore.format.fs import filesystem_for
from predstore.format.subsets import root_indices
from predstore.write.plan import CommittedKeys, committed_parts, unfinished_writes


def pending(
    path: str | os.PathLike[str],
    dataset: Any,
    dataloader_idx: int = 0,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """A ``torch.utils.data.Subset`` of ``dataset`` holding only the samples not committed yet.

    Args:
        path: the store: a directory or an object store URL (it need not exist yet).
        dataset: the map-style dataset (or a ``Subset`` of one) being predicted.
        dataloader_idx: the dataloader whose committed rows count.
        storage_options: credentials and endpoint of an object store, when
            ``path`` is a URL (default: the standard environment variables).

    Example::

        import torch
        from torch.utils.data import TensorDataset

        import predstore

        dataset = TensorDataset(torch.randn(12, 4))  # preds.pstore holds indices 0..7
        left = predstore.pending("preds.pstore", dataset)
        print(len(left))  # 4; predict them with the writer in the Trainer's callbacks:
        # writer = predstore.PredictionWriter("preds.pstore", mode="resume")
        # L.Trainer(callbacks=[writer]).predict(model, DataLoader(left))

    Committed means in the store, or in the rank manifests of an unfinished
    write that ``mode="resume"`` would continue. Samples are matched by their
    index in the root dataset (through any chain of ``Subset``), as
    ``PredictionWriter`` stores them; it maps the returned Subset's indices
    back to the root dataset by itself. A path with no store at all leaves
    every sample pending.
    """
    from torch.utils.data import Subset

    fs = filesystem_for(path, storage_options=storage_options)
    present = not fs.is_local or os.path.isdir(fs.root)
    base = load_store_manifest(fs) if present else None
    ranks = [r for rs in unfinished_writes(fs, base).values() for r in rs] if present else []
    parts = committed_parts(base, ranks)
    keys = CommittedKeys.of(fs, parts)
    done = keys.contains(int(dataloader_idx), root_indices(dataset))
    return Subset(dataset, np.flatnonzero(~done).tolist())
