"""Damaged and hostile stores: refused with a clear error; nothing outside the store is touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import predstore
from predstore.read.verify import verify
from support import batch, write_ranks

pytestmark = pytest.mark.corrupts_manifests


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    write_ranks(path, [list(range(30))], shard_bytes=8 * 1200)
    (tmp_path / "outside.parquet").write_bytes((next(path.rglob("*.parquet"))).read_bytes())
    (tmp_path / "secret").write_text("do not read me")
    return path


def edit_manifest(path: Path, change, *, records: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Apply ``change`` to the store manifest and (with ``records``) to every commit record."""
    files = [path / "manifest.json"]
    if records:
        files += sorted((path / "_commits").glob("*.json"))
    for file in files:
        doc = json.loads(file.read_text())
        change(doc)
        file.write_text(json.dumps(doc))


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.iterdir()}


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["parts"][0].update(path="../outside.parquet"),
        lambda d: d["parts"][0].update(path=str(Path("/etc/passwd"))),
        lambda d: d["arrays"][0].update(path="../../.."),
        lambda d: d["arrays"][0]["files"].update({"../secret": 14}),
        lambda d: d["writes"][0].update(write_id="../../tmp"),
        lambda d: d["parts"][0].update(rows="many"),
        lambda d: d["parts"][0].update(bytes=-5),
        lambda d: d.pop("schema"),
    ],
)
def test_hostile_manifests_are_refused(store: Path, change) -> None:  # type: ignore[no-untyped-def]
    edit_manifest(store, change)
    before = snapshot(store.parent)
    with pytest.raises(predstore.CorruptStoreError, match="manifest.json is damaged"):
        predstore.open(store)
    report = verify(store)
    assert not report.ok and "damaged" in report.problems[0]
    assert snapshot(store.parent) == before


def test_a_symlink_out_of_the_store_is_refused(store: Path) -> None:
    part = next(store.rglob("*.parquet"))
    part.unlink()
    part.symlink_to(store.parent / "outside.parquet")
    with pytest.raises(predstore.CorruptStoreError, match="leads outside the store"):
        predstore.open(store).read("pred", [1])
    assert any("outside the store" in p for p in verify(store).problems)


def test_a_directory_symlinked_out_is_refused(store: Path, tmp_path: Path) -> None:
    arrays = next(store.rglob("arrays"))
    elsewhere = tmp_path / "elsewhere"
    arrays.rename(elsewhere)
    arrays.symlink_to(elsewhere)
    with pytest.raises(predstore.CorruptStoreError, match="outside the store"):
        predstore.open(store).read("logits", [1])


def test_sizes_that_do_not_match_are_refused(store: Path) -> None:
    edit_manifest(store, lambda d: d["parts"][0].update(bytes=d["parts"][0]["bytes"] + 1))
    opened = predstore.open(store)  # sizes are checked when a part is first read
    with pytest.raises(predstore.CorruptStoreError, match="has .* bytes, the manifest says"):
        opened.read("pred", [1])


def test_a_shard_of_the_wrong_size_is_refused_when_read(store: Path) -> None:
    shard = sorted(
        p for p in store.rglob("*") if p.is_file() and "c" in p.relative_to(store).parts
    )[0]
    shard.write_bytes(shard.read_bytes()[:-10])
    opened = predstore.open(store)
    with pytest.raises(predstore.CorruptStoreError, match="bytes, the manifest says"):
        opened.read("logits")
    assert not verify(store).ok


def test_hostile_rank_manifests_are_refused_by_finalize(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3]], finalize=False)
    rank = next(path.rglob("rank-00001.json"))
    doc = json.loads(rank.read_text())
    doc["parts"][0]["path"] = "../../secret"
    rank.write_text(json.dumps(doc))
    with pytest.raises(predstore.CorruptStoreError, match="rank-00001.json is damaged"):
        predstore.finalize(path)
    with pytest.raises(predstore.StoreNotCommittedError):
        predstore.open(path)


def test_a_truncated_rank_manifest_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3]], finalize=False)
    rank = next(path.rglob("rank-00000.json"))
    rank.write_bytes(rank.read_bytes()[:50])
    with pytest.raises(predstore.CorruptStoreError, match="not a readable manifest"):
        predstore.finalize(path)


def test_names_and_keys_that_look_like_paths_are_only_data(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = root / "s"
    hostile = ["../../etc/passwd", "/etc/shadow", "..", "a/../../b", "\\windows"]
    outputs = batch(range(5)) | {
        "../../etc/passwd": np.ones((5, 400), np.float32),
        "/abs": [1, 2, 3, 4, 5],
    }
    with predstore.StoreWriter(path) as writer:
        writer.write(outputs, range(5), names=hostile)
    assert sorted(os.listdir(root)) == ["s"]
    assert not (tmp_path / "etc").exists()
    store = predstore.open(path)
    assert store.rows.names(store.rows.locate(range(5))) == hostile
    assert store.read("../../etc/passwd", [4]).shape == (1, 400)
    assert store.read("/abs", names=[".."]).tolist() == [3]
