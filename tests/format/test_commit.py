from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import predstore
from predstore.errors import CommitConflictError, SchemaError, StoreNotCommittedError
from predstore.format import history, layout
from predstore.format.commit import committed, finalize, load_store_manifest
from predstore.format.fs import LocalFileSystem
from predstore.format.manifest import encode
from support import assert_rows, batch, write_ranks


def test_finalize_stitches_every_rank(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [list(range(0, 30, 3)), list(range(1, 30, 3)), list(range(2, 30, 3))])
    store = predstore.open(path)
    assert len(store) == 30
    assert store.manifest.writes[0].ranks == {0: "closed", 1: "closed", 2: "closed"}
    assert [p.rank for p in store.manifest.parts] == sorted(p.rank for p in store.manifest.parts)
    assert_rows(store, range(30))


def test_no_store_manifest_until_finalize(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3]], finalize=False)
    with pytest.raises(StoreNotCommittedError, match="predstore finalize"):
        predstore.open(path)
    manifest = predstore.finalize(path)
    assert manifest.generation == 1 and manifest.rows == 4


def test_finalize_twice_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3]])
    again = predstore.finalize(path)
    assert again.generation == 1


def test_finalize_without_anything_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreNotCommittedError, match="no committed store and no unfinished write"):
        predstore.finalize(tmp_path / "nothing")


def test_ranks_that_disagree_on_the_schema_fail_finalize(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_id = layout.new_write_id()
    with predstore.StoreWriter(path, rank=0, world_size=2, write_id=write_id) as w:
        w.write({"x": [1.0, 2.0]}, [0, 1])
    with predstore.StoreWriter(path, rank=1, world_size=2, write_id=write_id) as w:
        w.write({"x": [1, 2]}, [2, 3])
    with pytest.raises(SchemaError, match=r"rank 1: key 'x' is int64 in parquet, expected float64"):
        predstore.finalize(path)
    with pytest.raises(StoreNotCommittedError):
        predstore.open(path)


def test_a_decided_commit_is_rolled_forward(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    fs = LocalFileSystem(path)
    current = load_store_manifest(fs)
    assert current is not None
    import msgspec

    decided = msgspec.structs.replace(current, generation=2, committed_at="2026-01-01T00:00:00Z")
    record = history.record_of(current, decided, replaces=False, forgotten=[])
    # A committer that died between deciding and publishing: only the record exists.
    fs.put_if_absent(layout.commit_record(2), encode(record))
    assert predstore.open(path).manifest.generation == 2  # readers apply the newer record
    assert json.loads((path / "manifest.json").read_bytes())["generation"] == 1
    assert committed(fs).generation == 2  # the next committer publishes it first
    assert json.loads((path / "manifest.json").read_bytes())["generation"] == 2


def test_two_committers_of_one_generation_conflict(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    fs = LocalFileSystem(path)
    current = load_store_manifest(fs)
    assert current is not None
    with pytest.raises(CommitConflictError, match="another process committed generation 1"):
        history.commit(fs, None, current, replaces=True)


def test_overwrite_keeps_the_old_files_for_readers_until_the_retention_ends(tmp_path: Path) -> None:
    path = tmp_path / "s"
    old = write_ranks(path, [[0, 1, 2]])
    reader = predstore.open(path)  # a reader that opened generation 1
    new = write_ranks(path, [[5, 6]], mode="overwrite")
    assert_rows(reader, [0, 1, 2])  # still reads the store it opened
    store = predstore.open(path)
    assert_rows(store, [5, 6])
    assert [r.write_id for r in store.manifest.retired] == [old]
    assert sorted(os.listdir(path / "writes")) == sorted([old, new])


def test_retired_files_go_at_the_first_commit_after_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "s"
    old = write_ranks(path, [[0, 1]])
    write_ranks(path, [[5, 6]], mode="overwrite", retention=0.2)
    assert old in os.listdir(path / "writes")
    time.sleep(0.3)
    write_ranks(path, [[7]], mode="append", retention=0.2)
    assert old not in os.listdir(path / "writes")
    store = predstore.open(path)
    assert store.manifest.retired == [] and store.manifest.generation == 3
    assert_rows(store, [5, 6, 7])


def test_retention_zero_removes_the_old_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "s"
    old = write_ranks(path, [[0, 1, 2]])
    new = write_ranks(path, [[5, 6]], mode="overwrite", retention=0)
    assert sorted(os.listdir(path / "writes")) == [new]
    store = predstore.open(path)
    assert old not in {w.write_id for w in store.manifest.writes} and store.manifest.retired == []


def test_vacuum_deletes_retired_and_superseded_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    old = write_ranks(path, [[0, 1]])
    stale = layout.new_write_id()
    with predstore.StoreWriter(path, rank=0, world_size=2, write_id=stale, mode="append") as w:
        w.write(batch([9]), [9])
    new = write_ranks(path, [[5, 6]], mode="overwrite")
    assert predstore.vacuum(path) == []  # within the retention: nothing goes
    # The stale write's row was committed by its rank: kept unless discarding is asked for.
    assert predstore.vacuum(path, retention=0) == [old]
    assert sorted(os.listdir(path / "writes")) == sorted([new, stale])
    assert predstore.vacuum(path, retention=0, discard_unfinished=True) == [stale]
    assert os.listdir(path / "writes") == [new]
    store = predstore.open(path)
    assert store.manifest.retired == []
    assert_rows(store, [5, 6])


def test_finalize_leaves_superseded_writes_alone(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    stale = layout.new_write_id()
    w = predstore.StoreWriter(path, rank=0, world_size=2, write_id=stale, mode="append")
    w.write(batch([7]), [7])
    w.close()
    write_ranks(
        path, [[2, 3]], mode="overwrite"
    )  # commits generation 2 before the stale write finishes
    manifest = finalize(LocalFileSystem(path))
    assert manifest.generation == 2
    assert stale not in {w.write_id for w in manifest.writes}
    with pytest.raises(CommitConflictError, match="started from generation 1"):
        finalize(LocalFileSystem(path), write_ids=[stale])
