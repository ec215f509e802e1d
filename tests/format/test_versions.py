"""Stores written by older predstore versions keep opening; newer ones are refused clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import predstore

OLD_STORE = Path(__file__).parent.parent / "data" / "format-0.1.pstore"
"""A store written by predstore 0.1 (format version 1): two writes, Parquet scalars, names, a Zarr key."""


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "old.pstore"
    shutil.copytree(OLD_STORE, path)
    return path


def test_a_store_written_by_0_1_opens_and_reads(old_store: Path) -> None:
    store = predstore.open(old_store)
    assert len(store) == 10
    assert store.keys() == ["score", "label", "mask"]
    indices = [0, 3, 4, 9]
    assert store.read("label", indices).tolist() == indices
    assert np.allclose(store.read("score", indices), np.array(indices) * 0.5)
    masks = store.read("mask", indices)
    assert masks.shape == (4, 32, 40)
    assert [int(m[0, 0]) for m in masks] == indices
    assert store.read("label", names=["case-8"]).tolist() == [8]
