"""Where each predicted row's global index comes from.

In order of preference, recorded in the manifest as ``index_source``:

1. ``index_key``: the outputs carry the dataset index of each sample (the
   way to go for IterableDatasets and custom batch samplers);
2. ``batch_indices``: the sampler indices Lightning tracks for
   map-style datasets, mapped through any chain of ``torch.utils.data.Subset``
   to the index in the root dataset;
3. ``positional``: a counter per dataloader, ``rank + k * world_size`` for
   the k-th sample a rank sees, which is only right when every rank sees the
   samples interleaved in that order; a warning says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from predstore.format.dtypes import NDArray
from predstore.format.subsets import subset_chain


class IndexSource:
    """Turns what a dataloader's batches provide into global indices of its root dataset."""

    def __init__(self, dataset: Any, *, index_key: str | None, rank: int, world_size: int) -> None:
        self.maps: list[NDArray]
        self.root: Any
        self.maps, self.root = subset_chain(dataset) if dataset is not None else ([], None)
        self.index_key = index_key
        self.rank, self.world_size = rank, world_size
        self.seen = 0
        self.kind: str | None = None

    def indices(
        self, outputs: dict[str, Any], batch_indices: Sequence[int] | None, rows: int
    ) -> NDArray:
        """The global index of each of the ``rows`` rows of one batch (and remember which source)."""
        if self.index_key is not None:
            self.kind = "index_key"
            return _as_numpy(outputs.pop(self.index_key))
        if batch_indices is not None and len(batch_indices) == rows:
            self.kind = "batch_indices"
            mapped = np.asarray(batch_indices, dtype=np.int64)
            for index_map in self.maps:
                mapped = index_map[mapped]
            return mapped
        self.kind = "positional"
        start = self.seen
        self.seen += rows
        return self.rank + (start + np.arange(rows, dtype=np.int64)) * self.world_size


def _as_numpy(value: Any) -> NDArray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.ndim == 0:
        array = array.reshape(1)
    return array  # checked (integer, non-negative, 1-D) by the writer


def batch_rows(outputs: dict[str, Any]) -> int | None:
    """The number of rows a batch of outputs holds: the length of its first per-sample value."""
    import torch

    for value in outputs.values():
        if isinstance(value, torch.Tensor | np.ndarray) and value.ndim >= 1:
            return int(value.shape[0])
        if isinstance(value, list | tuple):
            return len(value)
        if isinstance(value, dict):
            nested = batch_rows(value)
            if nested is not None:
                return nested
    return None
