"""Coverage: which (dataloader_idx, index) keys the parts of a store hold.

Coverage is computed from the parts themselves when a manifest is committed,
so the figures a reader sees are facts about the data, not counters a writer
kept. ``missing`` compares the unique indices with the expected dataset
length: when every index lies in ``[0, expected)`` the missing indices are
known exactly (a sample is kept); when a write used indices outside that
range (a ``Subset`` of a larger dataset keeps its root indices), only their
count is known and the sample is empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from predstore.format.fs import FileSystem
from predstore.format.manifest import Coverage, PartEntry
from predstore.format.parquet import read_part
from predstore.format.schema import DATALOADER, INDEX

SAMPLE = 10
"""How many duplicate and missing indices a coverage record keeps as examples."""


def row_keys(fs: FileSystem, parts: Sequence[PartEntry]) -> tuple[np.ndarray, np.ndarray]:
    """``(dataloader_idx, index)`` of every row of ``parts``, in part order."""
    dls, indices = [], []
    for part in parts:
        table = read_part(fs, part, [DATALOADER, INDEX])
        dls.append(table.column(DATALOADER).to_numpy())
        indices.append(table.column(INDEX).to_numpy())
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(dls), np.concatenate(indices)


def coverage(
    dataloader_idx: np.ndarray[Any, Any],
    index: np.ndarray[Any, Any],
    expected: Mapping[int, int],
) -> dict[int, Coverage]:
    """Coverage of each dataloader seen in the rows or in ``expected``."""
    result = {}
    for dl in sorted(set(np.unique(dataloader_idx).tolist()) | set(expected)):
        result[int(dl)] = _one(index[dataloader_idx == dl], expected.get(dl))
    return result


def _one(index: np.ndarray[Any, Any], expected: int | None) -> Coverage:
    unique, counts = np.unique(index, return_counts=True)
    missing: int | None = None
    missing_sample: list[int] = []
    if expected is not None:
        in_range = unique.size == 0 or (unique[0] >= 0 and unique[-1] < expected)
        missing = max(expected - unique.size, 0)
        if in_range and missing:
            present = np.zeros(expected, dtype=bool)
            present[unique] = True
            missing_sample = np.flatnonzero(~present)[:SAMPLE].tolist()
    return Coverage(
        expected=expected,
        written=int(index.size),
        unique=int(unique.size),
        duplicates=int(index.size - unique.size),
        missing=missing,
        duplicate_sample=unique[counts > 1][:SAMPLE].tolist(),
        missing_sample=missing_sample,
    )
