"""The commit history: records of what changed, a checkpoint that never moves back, recovery."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import predstore
from predstore.errors import CorruptStoreError, StoreExistsError
from predstore.format import history, layout
from predstore.format.fs import LocalFileSystem
from predstore.format.manifest import encode
from predstore.read.verify import verify
from support import assert_rows, batch, write_ranks


class CountingFileSystem(LocalFileSystem):
    """A local store that counts the requests an object store would get."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, str]] = []

    def read_bytes(self, path: str) -> bytes:
        self.calls.append(("read", path))
        return super().read_bytes(path)

    def read_range(self, path: str, start: int, length: int) -> bytes:
        self.calls.append(("read", path))
        return super().read_range(path, start, length)

    def size(self, path: str) -> int:
        self.calls.append(("size", path))
        return super().size(path)

    def list(self, path: str) -> list[str]:
        self.calls.append(("list", path))
        return super().list(path)

    def uri(self, path: str) -> str:
        if path.endswith(".parquet"):
            self.calls.append(("read", path))
        return super().uri(path)


def append_one_row_each(path: Path, count: int) -> None:
    write_ranks(path, [[0]])
    for i in range(1, count):
        write_ranks(path, [[i]], mode="append")


def start_ranks(path: Path, world_size: int, *, mode: str) -> list[predstore.StoreWriter]:
    """The ranks of one write, started (from the current generation) but with no rows yet."""
    write_id = layout.new_write_id()
    return [
        predstore.StoreWriter(path, rank=r, world_size=world_size, write_id=write_id, mode=mode)  # type: ignore[arg-type]
        for r in range(world_size)
    ]


def close_ranks(ranks: list[predstore.StoreWriter], indices: list[list[int]]) -> None:
    for writer, rows in zip(ranks, indices, strict=True):
        writer.write(batch(rows), rows)
        writer.close()


def generation_of_checkpoint(path: Path) -> int:
    return int(json.loads((path / "manifest.json").read_bytes())["generation"])


def test_the_checkpoint_never_moves_back(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    write_ranks(path, [[2]], mode="append")
    second = predstore.open(path).manifest
    write_ranks(path, [[3]], mode="append")
    fs = LocalFileSystem(path)
    # A committer that decided generation 2 and stalled until 3 was published.
    history.publish(fs, second)
    assert generation_of_checkpoint(path) == 3
    # Even a checkpoint put back by hand (or by a rename of another tool) loses nothing:
    # readers apply the newer records, and the next committer publishes them.
    (path / "manifest.json").write_bytes(encode(second))
    store = predstore.open(path)
    assert store.manifest.generation == 3
    assert_rows(store, [0, 1, 2, 3])
    write_ranks(path, [[4]], mode="append")
    assert generation_of_checkpoint(path) == 4
    assert_rows(predstore.open(path), [0, 1, 2, 3, 4])


def test_history_costs_what_each_commit_changed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    append_one_row_each(path, 30)
    sizes = [(path / layout.commit_record(g)).stat().st_size for g in range(2, 31)]
    assert max(sizes) <= 1.2 * min(sizes), sizes  # the 30th append records as much as the 2nd
    records = sum(p.stat().st_size for p in (path / "_commits").iterdir())
    assert records < 40 * sizes[0]
    assert_rows(predstore.open(path), range(30))


def test_opening_makes_three_requests_and_lists_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    append_one_row_each(path, 20)
    fs = CountingFileSystem(path)
    store = predstore.open(path, filesystem=fs)
    assert len(store) == 20 and store.keys() == ["logits", "pred", "prob"]
    # The checkpoint's size (refused if oversized) and content, and the next record, absent.
    assert fs.calls == [
        ("size", "manifest.json"),
        ("read", "manifest.json"),
        ("size", layout.commit_record(21)),
    ]


def test_a_small_read_touches_only_its_parts(tmp_path: Path) -> None:
    path = tmp_path / "s"
    append_one_row_each(path, 20)
    fs = CountingFileSystem(path)
    store = predstore.open(path, filesystem=fs)
    fs.calls.clear()
    assert store.read("pred", [3, 17]).tolist() == [3 % 7, 17 % 7]
    touched = {p for _, p in fs.calls if p.endswith(".parquet")}
    assert len(touched) == 2, touched


def test_vacuum_prunes_old_records_and_recovery_still_works(tmp_path: Path) -> None:
    path = tmp_path / "s"
    append_one_row_each(path, 12)
    assert len(os.listdir(path / "_commits")) == 12
    assert predstore.vacuum(path, retention=0) == []
    left = sorted(os.listdir(path / "_commits"))
    assert len(left) == 1  # one record of the whole store starts the history
    (path / "manifest.json").unlink()
    assert_rows(predstore.open(path), range(12))
    write_ranks(path, [[12]], mode="append")
    assert_rows(predstore.open(path), range(13))


def test_vacuum_keeps_recent_history(tmp_path: Path) -> None:
    path = tmp_path / "s"
    append_one_row_each(path, 5)
    predstore.vacuum(path)  # everything is younger than the retention
    assert len(os.listdir(path / "_commits")) == 5


def test_a_truncated_checkpoint_is_rebuilt_from_the_records(tmp_path: Path) -> None:
    path = tmp_path / "s"
    append_one_row_each(path, 4)
    checkpoint = path / "manifest.json"
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    assert_rows(predstore.open(path), range(4))  # readers rebuild it
    report = verify(path)
    assert not report.ok and "manifest.json" in report.problems[0]
    assert "finalize" in report.problems[0]
    predstore.finalize(path)  # rewrites the checkpoint
    assert verify(path).ok and generation_of_checkpoint(path) == 4
    write_ranks(path, [[4]], mode="append")
    assert_rows(predstore.open(path), range(5))


def test_a_garbage_next_record_is_reported_and_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    (path / layout.commit_record(2)).write_bytes(b'{"format": "predstore", "forma')
    assert_rows(predstore.open(path), [0, 1])  # readers keep the last good generation
    with pytest.raises(CorruptStoreError, match=r"0000000002.json.*predstore finalize"):
        write_ranks(path, [[2]], mode="append")
    report = verify(path)
    assert not report.ok and any("0000000002.json" in p for p in report.problems)
    predstore.finalize(path)
    assert (path / "_commits" / "damaged" / "0000000002.json").exists()
    write_ranks(path, [[2]], mode="append")
    assert_rows(predstore.open(path), [0, 1, 2])
    assert verify(path).ok


def test_verify_does_not_call_retired_writes_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    write_ranks(path, [[2, 3]], mode="overwrite")
    report = verify(path)
    assert report.unfinished == [] and report.ok


def test_a_deleted_part_is_reported_without_a_finalize_loop(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    write_ranks(path, [[2, 3]], mode="append")
    next(path.rglob("*.parquet")).unlink()
    report = verify(path)
    assert not report.ok and any("missing" in p for p in report.problems)
    assert report.unfinished == []  # nothing for finalize to recover: it would change nothing
    before = predstore.open(path).manifest.generation
    assert predstore.finalize(path).generation == before


def test_the_loser_of_two_concurrent_appends_commits_after_the_winner(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    first = predstore.StoreWriter(path, mode="append")
    second = predstore.StoreWriter(path, mode="append")  # both start from generation 1
    first.write(batch([2, 3]), [2, 3])
    second.write(batch([4, 5]), [4, 5])
    assert first.close().generation == 2
    assert second.close().generation == 3
    assert_rows(predstore.open(path), range(6))


def test_an_append_that_lost_the_race_is_recovered_by_finalize(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    loser = start_ranks(path, 2, mode="append")
    write_ranks(path, [[2, 3]], mode="append")  # the winner commits generation 2
    close_ranks(loser, [[4], [5]])
    assert predstore.vacuum(path, retention=0) == []  # its rows are committed by its ranks
    assert any(w.write_id == loser[0].write_id and w.recoverable for w in verify(path).unfinished)
    assert predstore.finalize(path).rows == 6
    assert_rows(predstore.open(path), range(6))


def test_resume_picks_up_an_append_that_lost_the_race(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    loser = start_ranks(path, 2, mode="append")
    write_ranks(path, [[2, 3]], mode="append")
    close_ranks(loser, [[4], [5]])
    write_ranks(path, [[4, 5, 6]], mode="resume")
    assert_rows(predstore.open(path), range(7))


def test_an_append_overtaken_by_an_overwrite_is_superseded(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1]])
    loser = start_ranks(path, 2, mode="append")
    write_ranks(path, [[2, 3]], mode="overwrite")
    close_ranks(loser, [[4], [5]])
    stale = loser[0].write_id
    assert predstore.finalize(path).rows == 2  # it is left alone
    assert not any(w.recoverable for w in verify(path).unfinished)
    assert stale not in predstore.vacuum(path, retention=0)
    assert stale in predstore.vacuum(path, retention=0, discard_unfinished=True)


def test_a_write_without_rows_blocks_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [list(range(8))])
    with (
        pytest.raises(predstore.InvalidBatchError),
        predstore.StoreWriter(path, mode="overwrite") as writer,
    ):
        writer.write([np.zeros(3), np.zeros(3)], [0, 1])  # type: ignore[arg-type]  # a list
    assert len(os.listdir(path / "writes")) == 1
    report = verify(path)
    assert report.ok and report.unfinished == []
    assert predstore.finalize(path).rows == 8
    write_ranks(path, [[8]], mode="append")  # not blocked
    assert_rows(predstore.open(path), range(9))


def test_an_unfinished_overwrite_never_empties_a_good_store(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [list(range(8))])
    with (
        pytest.raises(RuntimeError, match="died"),
        predstore.StoreWriter(path, mode="overwrite") as writer,
    ):
        writer.write(batch([0, 1]), [0, 1])
        writer.commit()
        raise RuntimeError("the job died")
    with pytest.raises(StoreExistsError, match="unfinished overwrite.*8 rows.*with 2"):
        predstore.finalize(path)
    assert_rows(predstore.open(path), range(8))
    assert predstore.finalize(path, allow_shrink=True).rows == 2
    assert_rows(predstore.open(path), [0, 1])
