"""Stores written by older predstore versions keep opening; newer ones are refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import predstore
from predstore.format.manifest import FORMAT_VERSION
from predstore.read.verify import verify

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


def test_writing_to_a_0_1_store_asks_for_an_upgrade(old_store: Path) -> None:
    with pytest.raises(predstore.FormatVersionError, match="format version 1.*predstore upgrade"):
        predstore.StoreWriter(old_store, mode="append")
    assert predstore.open(old_store).manifest.generation == 2  # nothing was written


def test_upgrade_converts_a_0_1_store_in_one_commit(old_store: Path) -> None:
    manifest = predstore.upgrade(old_store)
    assert manifest.format_version == FORMAT_VERSION and manifest.generation == 3
    record = json.loads((old_store / "_commits" / "0000000003.json").read_bytes())
    assert record["replaces"] and record["checkpoint"] and record["format_version"] == 2
    assert predstore.upgrade(old_store).generation == 3  # a second upgrade changes nothing
    (old_store / "manifest.json").unlink()  # the record alone gives the same manifest
    assert predstore.open(old_store).manifest == manifest
    test_a_store_written_by_0_1_opens_and_reads(old_store)
    with predstore.StoreWriter(old_store, mode="append") as writer:
        writer.write(
            {
                "score": np.float32([5.0]),
                "label": np.int64([10]),
                "mask": np.full((1, 32, 40), 10, np.uint8),
            },
            [10],
            names=["case-10"],
        )
    store = predstore.open(old_store)
    assert len(store) == 11 and store.read("mask", [10])[0, 0, 0] == 10
    assert verify(old_store).ok


def test_a_store_of_a_newer_format_is_refused_clearly(old_store: Path) -> None:
    checkpoint = old_store / "manifest.json"
    doc = json.loads(checkpoint.read_bytes())
    doc["format_version"] = FORMAT_VERSION + 1
    checkpoint.write_text(json.dumps(doc))
    with pytest.raises(predstore.FormatVersionError, match="upgrade predstore"):
        predstore.open(old_store)
