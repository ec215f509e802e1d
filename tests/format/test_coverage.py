from __future__ import annotations

import numpy as np

from predstore.format.coverage import coverage


def test_counts_duplicates_and_missing_per_dataloader() -> None:
    dl = np.array([0, 0, 0, 0, 1, 1])
    index = np.array([0, 3, 3, 9, 5, 5])
    cover = coverage(dl, index, {0: 11, 1: 6})
    zero = cover[0]
    assert (zero.expected, zero.written, zero.unique, zero.duplicates, zero.missing) == (
        11,
        4,
        3,
        1,
        8,
    )
    assert zero.duplicate_sample == [3]
    assert zero.missing_sample == [1, 2, 4, 5, 6, 7, 8, 10]
    assert (cover[1].unique, cover[1].duplicates, cover[1].missing) == (1, 1, 5)


def test_unknown_length_leaves_missing_unknown() -> None:
    cover = coverage(np.zeros(3, int), np.array([4, 5, 6]), {})
    assert cover[0].missing is None and cover[0].missing_sample == []


def test_indices_outside_the_expected_range_count_but_have_no_sample() -> None:
    # A Subset keeps root-dataset indices: 3 samples expected, indices beyond 3.
    cover = coverage(np.zeros(2, int), np.array([10, 42]), {0: 3})
    assert cover[0].missing == 1 and cover[0].missing_sample == []


def test_an_expected_dataloader_with_no_rows_is_all_missing() -> None:
    cover = coverage(np.zeros(0, int), np.zeros(0, int), {2: 4})
    assert cover[2].missing == 4 and cover[2].missing_sample == [0, 1, 2, 3]
