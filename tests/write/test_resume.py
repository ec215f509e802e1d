"""Resume: continue a write that died, exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import Dataset, Subset

import predstore
from predstore.format import layout
from support import assert_rows, batch, write_ranks


def died(
    path: Path,
    indices: list[int],
    *,
    committed_upto: int,
    mode: str = "error",
    world: int = 1,
    rank: int = 0,
    write_id: str | None = None,
) -> str:
    """A write that committed its first ``committed_upto`` rows, then died (never closed)."""
    writer = predstore.StoreWriter(
        path,
        mode=mode,
        world_size=world,
        rank=rank,
        write_id=write_id or (layout.new_write_id() if world > 1 else None),
        background=False,
    )
    writer.write(batch(indices[:committed_upto]), indices[:committed_upto])
    writer.commit()
    writer.write(batch(indices[committed_upto:]), indices[committed_upto:])  # buffered, then lost
    return writer.write_id


def test_resume_skips_what_was_committed_and_commits_both_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = died(path, list(range(30)), committed_upto=12)
    with predstore.StoreWriter(path, mode="resume") as writer:
        for start in range(0, 30, 7):
            chunk = list(range(start, min(start + 7, 30)))
            writer.write(batch(chunk), chunk)
    assert writer.rows_skipped == 12
    store = predstore.open(path)
    assert_rows(store, range(30))
    assert store.coverage[0].duplicates == 0
    assert [w.write_id for w in store.manifest.writes] == [first, writer.write_id]
    assert store.manifest.writes[1].mode == "resume"


def test_resume_of_a_multi_rank_write(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_id = layout.new_write_id()
    died(path, list(range(0, 20, 2)), committed_upto=4, world=2, rank=0, write_id=write_id)
    died(path, list(range(1, 20, 2)), committed_upto=6, world=2, rank=1, write_id=write_id)
    resumed = layout.new_write_id()
    for rank in (0, 1):
        with predstore.StoreWriter(
            path, mode="resume", rank=rank, world_size=2, write_id=resumed
        ) as writer:
            mine = list(range(rank, 20, 2))
            writer.write(batch(mine), mine)
    predstore.finalize(path)
    assert_rows(predstore.open(path), range(20))


def test_resume_continues_an_overwrite_and_replaces_the_old_store(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[100, 101]])
    died(path, list(range(10)), committed_upto=5, mode="overwrite")
    assert_rows(predstore.open(path), [100, 101])  # the dead overwrite did not commit
    with predstore.StoreWriter(path, mode="resume") as writer:
        writer.write(batch(range(10)), range(10))
    assert_rows(predstore.open(path), range(10))


def test_resume_with_nothing_to_resume_writes_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with predstore.StoreWriter(path, mode="resume") as writer:  # no store yet: a plain write
        writer.write(batch(range(5)), range(5))
    with predstore.StoreWriter(path, mode="resume") as writer:  # a committed store: only new rows
        writer.write(batch(range(8)), range(8))
    assert writer.rows_skipped == 5
    assert_rows(predstore.open(path), range(8))


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (
            lambda rows: {**batch(rows), "extra": np.zeros(len(rows))},
            r"keys differ.*new \['extra'\]",
        ),
        (lambda rows: {k: v for k, v in batch(rows).items() if k != "prob"}, r"missing \['prob'\]"),
        (
            lambda rows: {**batch(rows), "prob": np.zeros(len(rows), np.float64)},
            "key 'prob' changed dtype",
        ),
        (
            lambda rows: {**batch(rows), "logits": np.zeros((len(rows), 301), np.float32)},
            "key 'logits' changed shape",
        ),
    ],
)
def test_resume_with_another_schema_fails_before_writing(
    tmp_path: Path, outputs, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s"
    died(path, list(range(10)), committed_upto=4)
    writer = predstore.StoreWriter(path, mode="resume")
    with pytest.raises(predstore.SchemaError, match=message):
        writer.write(outputs(list(range(10))), range(10))
    writer.close()
    assert_rows(predstore.open(path), range(4))  # the adopted rows, and nothing else


class Numbers(Dataset):
    def __len__(self) -> int:
        return 50

    def __getitem__(self, i: int) -> int:
        return i


def test_pending_is_what_is_not_committed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    assert len(predstore.pending(path, Numbers())) == 50  # nothing there yet
    died(path, list(range(0, 50, 2)), committed_upto=10)  # indices 0, 2, ..., 18 committed
    left = predstore.pending(path, Numbers())
    assert isinstance(left, Subset) and len(left) == 40
    assert [left[i] for i in range(12)] == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 20, 21]
    inner = Subset(Numbers(), list(range(10, 30)))  # root indices 10..29
    assert [inner[i] for i in predstore.pending(path, inner).indices][:5] == [11, 13, 15, 17, 19]
    assert len(predstore.pending(path, Numbers(), dataloader_idx=1)) == 50


def test_verify_reports_what_resume_would_recover(tmp_path: Path) -> None:
    from predstore.read.verify import verify

    path = tmp_path / "s"
    died(path, list(range(10)), committed_upto=6)
    report = verify(path)
    assert not report.ok and report.unfinished[0].rows == 6 and report.unfinished[0].recoverable
