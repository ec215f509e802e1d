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
from predstore.format.manifest import Coverage, PartEntry, stepped_indices
from predstore.format.parquet import check_size, read_part
from predstore.format.schema import DATALOADER, INDEX

SAMPLE = 10
"""How many duplicate and missing indices a coverage record keeps as examples."""


def row_keys(fs: FileSystem, parts: Sequence[PartEntry]) -> tuple[np.ndarray, np.ndarray]:
    """``(dataloader_idx, index)`` of every row of ``parts``, in part order.

    A part whose manifest entry has an ``index_step`` is not read: its keys
    are known from the entry.
    """
    dls, indices = [], []
    for part in parts:
        if part.index_step is not None:
            indices.append(stepped_indices(part))
            dls.append(np.full(part.rows, part.dataloaders[0], np.int64))
            continue
        check_size(fs, part)
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


def extend(
    fs: FileSystem,
    base_parts: Sequence[PartEntry],
    base: Mapping[int, Coverage],
    new_parts: Sequence[PartEntry],
    expected: Mapping[int, int],
) -> dict[int, Coverage]:
    """Coverage after adding ``new_parts`` to ``base_parts`` (whose coverage is ``base``).

    Only the new parts and the old parts whose index range overlaps theirs
    are read (none, when an append adds new indices), so a commit costs
    O(change). The figures equal :func:`coverage`'s; the samples are true
    examples, not always the smallest ones.
    """
    dl_new, index_new = row_keys(fs, new_parts)
    result = {}
    for dl in sorted(set(np.unique(dl_new).tolist()) | set(expected) | set(base)):
        new = index_new[dl_new == dl]
        old = base.get(dl) or Coverage(
            expected=None, written=0, unique=0, duplicates=0, missing=None
        )
        seen = _overlapping_keys(fs, base_parts, dl, new)
        keys, counts = np.unique(new, return_counts=True)
        known = np.isin(keys, seen)
        unique = old.unique + int((~known).sum())
        written = old.written + int(new.size)
        doubled = set(old.duplicate_sample) | set(keys[(counts > 1) | known].tolist())
        want = expected.get(dl)
        missing = None if want is None else max(want - unique, 0)
        parts = [p for p in [*base_parts, *new_parts] if dl in p.dataloaders]
        sample: list[int] = []
        if (
            want is not None
            and missing
            and all(p.index_min >= 0 and p.index_max < want for p in parts)
        ):
            still = set(old.missing_sample) - set(keys.tolist())
            sample = sorted(still | set(_gaps(parts, want)))[:SAMPLE]
        result[int(dl)] = Coverage(
            expected=want,
            written=written,
            unique=unique,
            duplicates=written - unique,
            missing=missing,
            duplicate_sample=sorted(doubled)[:SAMPLE],
            missing_sample=sample,
        )
    return result


def _overlapping_keys(
    fs: FileSystem, parts: Sequence[PartEntry], dl: int, new: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """The indices of ``dl`` in ``parts`` that fall in the range of ``new``."""
    if not new.size:
        return np.zeros(0, np.int64)
    lo, hi = int(new.min()), int(new.max())
    near = [p for p in parts if dl in p.dataloaders and p.index_min <= hi and p.index_max >= lo]
    dls, index = row_keys(fs, near)
    return index[(dls == dl) & (index >= lo) & (index <= hi)]


def _gaps(parts: Sequence[PartEntry], expected: int) -> list[int]:
    """Up to ``SAMPLE`` indices in ``[0, expected)`` outside every part's index range."""
    lows = np.array([p.index_min for p in parts], np.int64)
    highs = np.array([p.index_max for p in parts], np.int64)
    order = np.argsort(lows)
    lows, reach = lows[order], np.maximum.accumulate(highs[order])
    starts = np.concatenate(([0], reach + 1))
    stops = np.concatenate((lows, [expected]))
    found: list[int] = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        found.extend(range(start, min(stop, start + SAMPLE - len(found))))
        if len(found) >= SAMPLE:
            break
    return found
