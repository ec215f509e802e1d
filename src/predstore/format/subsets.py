"""Root-dataset indices through chains of ``torch.utils.data.Subset``.

A store's ``index`` column holds each sample's index in the root dataset,
whatever ``Subset`` wrappers the prediction dataloader saw; the writer, the
resume helper and the datasets all map positions through the same chain.
torch is imported only when these functions run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predstore.format.dtypes import NDArray


def subset_chain(dataset: Any) -> tuple[list[NDArray], Any]:
    """The index maps of the ``Subset`` wrappers around ``dataset``, outermost first, and the root."""
    from torch.utils.data import Subset

    maps = []
    while isinstance(dataset, Subset):
        maps.append(np.asarray(dataset.indices, dtype=np.int64))
        dataset = dataset.dataset
    return maps, dataset


def root_indices(dataset: Any) -> NDArray:
    """The root-dataset index of each sample of ``dataset``."""
    maps, _ = subset_chain(dataset)
    indices = np.arange(len(dataset), dtype=np.int64)
    for index_map in maps:
        indices = index_map[indices]
    return indices
