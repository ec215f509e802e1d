"""Root-dataset indices through chains of torch Subsets."""

from __future__ import annotations

import torch
from torch.utils.data import Subset, TensorDataset

from predstore.format.subsets import root_indices, subset_chain


def test_nested_subsets_map_to_the_root_dataset() -> None:
    root = TensorDataset(torch.arange(10))
    inner = Subset(root, [9, 7, 5, 3, 1])
    outer = Subset(inner, [4, 0, 2])
    assert root_indices(outer).tolist() == [1, 9, 5]
    maps, found = subset_chain(outer)
    assert found is root
    assert [m.tolist() for m in maps] == [[4, 0, 2], [9, 7, 5, 3, 1]]


def test_a_plain_dataset_is_its_own_root() -> None:
    root = TensorDataset(torch.arange(3))
    assert root_indices(root).tolist() == [0, 1, 2]
    assert subset_chain(root) == ([], root)
