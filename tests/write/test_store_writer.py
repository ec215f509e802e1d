from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import predstore
from predstore.errors import (
    CorruptStoreError,
    FormatVersionError,
    InvalidBatchError,
    SchemaError,
    StoreExistsError,
    StoreNotCommittedError,
)
from predstore.format.commit import load_rank_manifest
from predstore.format.fs import LocalFileSystem
from predstore.write.keys import KeySpec
from support import assert_rows, batch, write_ranks


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A committed store holding indices 0..19."""
    path = tmp_path / "store"
    write_ranks(path, [list(range(20))])
    return path


# -- modes ------------------------------------------------------------------


def test_error_mode_refuses_an_existing_store(committed: Path) -> None:
    with pytest.raises(
        StoreExistsError,
        match=r"already holds a committed store \(20 rows.*mode='overwrite'.*mode='append'",
    ):
        predstore.StoreWriter(committed)
    assert_rows(predstore.open(committed), range(20))


def test_overwrite_keeps_the_old_store_readable_until_it_commits(committed: Path) -> None:
    writer = predstore.StoreWriter(committed, mode="overwrite")
    writer.write(batch([100, 101]), [100, 101])
    writer.commit()
    assert_rows(predstore.open(committed), range(20))  # old store until the commit
    writer.close()
    assert_rows(predstore.open(committed), [100, 101])


def test_append_adds_rows_and_refuses_existing_indices(committed: Path) -> None:
    with predstore.StoreWriter(committed, mode="append") as writer:
        writer.write(batch([20, 21]), [20, 21])
        with pytest.raises(
            InvalidBatchError, match=r"append: indices \[19\] of dataloader 0 are in the store"
        ):
            writer.write(batch([19, 22]), [19, 22])
        writer.write(batch([5]), [5], dataloader_idx=1)  # another dataloader is another key space
    store = predstore.open(committed)
    assert_rows(store, range(22))
    assert store.indices(1).tolist() == [5]
    assert store.manifest.generation == 2 and len(store.manifest.writes) == 2


def test_append_must_keep_the_schema(committed: Path) -> None:
    with (
        predstore.StoreWriter(committed, mode="append") as writer,
        pytest.raises(SchemaError, match="keys differ"),
    ):
        writer.write({"other": [1.0]}, [30])
    assert_rows(predstore.open(committed), range(20))


def test_append_to_a_new_path_creates_the_store(tmp_path: Path) -> None:
    write_ranks(tmp_path / "new", [[1, 2]], mode="append")
    assert_rows(predstore.open(tmp_path / "new"), [1, 2])


def test_a_directory_that_is_not_a_store_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    for mode in ("error", "overwrite", "append"):
        with pytest.raises(StoreExistsError, match="is not empty and is not a predstore store"):
            predstore.StoreWriter(tmp_path, mode=mode)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_path_that_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(StoreExistsError, match="is a file; a store is a directory"):
        predstore.StoreWriter(file)
    with pytest.raises(StoreNotCommittedError, match="is a file"):
        predstore.open(file)


def test_opening_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(
        StoreNotCommittedError, match=r"no store at .*nowhere: the directory does not"
    ):
        predstore.open(tmp_path / "nowhere")


def test_an_unfinished_write_blocks_error_and_append(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3]], finalize=False)
    for mode in ("error", "append"):
        with pytest.raises(
            StoreExistsError, match="unfinished write .*4 rows.*mode='resume'.*predstore finalize"
        ):
            predstore.StoreWriter(path, mode=mode)


# -- bad input: a clear error, and what was committed still reads ------------

BAD_BATCHES = [
    (
        {
            "logits": torch.zeros(3, 300),
            "pred": torch.zeros(4, dtype=torch.int64),
            "prob": torch.zeros(4),
        },
        "key 'logits' has 3 values but the batch has 4 rows",
    ),
    (
        {
            "logits": torch.zeros(4, 301),
            "pred": torch.zeros(4, dtype=torch.int64),
            "prob": torch.zeros(4),
        },
        r"key 'logits' changed shape: .*float32\[300\].*float32\[301\]",
    ),
    (
        {
            "logits": torch.zeros(4, 300, dtype=torch.float64),
            "pred": torch.zeros(4, dtype=torch.int64),
            "prob": torch.zeros(4),
        },
        "key 'logits' changed dtype",
    ),
    (
        {
            "logits": torch.zeros(4, 300, dtype=torch.complex64),
            "pred": torch.zeros(4, dtype=torch.int64),
            "prob": torch.zeros(4),
        },
        "key 'logits': dtype complex64 cannot be stored",
    ),
    ({"logits": torch.zeros(4, 300), "pred": [object()] * 4, "prob": torch.zeros(4)}, "key 'pred'"),
    ({"logits": torch.zeros(4, 300), "prob": torch.zeros(4)}, r"missing \['pred'\]"),
]


@pytest.mark.parametrize(("outputs", "message"), BAD_BATCHES)
def test_bad_batches_raise_and_keep_what_was_written(
    tmp_path: Path, outputs: dict, message: str
) -> None:
    path = tmp_path / "s"
    good = batch(range(8))
    with predstore.StoreWriter(path) as writer:
        writer.write({k: torch.from_numpy(v) for k, v in good.items()}, range(8))
        with pytest.raises((SchemaError, InvalidBatchError), match=message):
            writer.write(outputs, [8, 9, 10, 11])
        writer.write(batch([12]), [12])  # the writer stays usable
    assert_rows(predstore.open(path), [*range(8), 12])


@pytest.mark.parametrize(
    ("indices", "names", "message"),
    [
        ([0.5, 1.5], None, "indices must be integers"),
        ([-3, 1], None, "non-negative"),
        ([8, 9], [1, 2], "names must be strings"),
    ],
)
def test_bad_indices_and_names_in_an_append_keep_the_store(
    committed: Path, indices: list, names: list | None, message: str
) -> None:
    with predstore.StoreWriter(committed, mode="append") as writer:
        with pytest.raises(InvalidBatchError, match=message):
            writer.write(batch([20, 21]), indices, names=names)
        writer.write(batch([20]), [20])
    assert_rows(predstore.open(committed), range(21))


def test_an_exception_inside_the_block_commits_rows_but_not_the_store(committed: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="model exploded"),
        predstore.StoreWriter(committed, mode="append") as writer,
    ):
        writer.write(batch([20, 21]), [20, 21])
        raise RuntimeError("model exploded")
    assert_rows(predstore.open(committed), range(20))  # the store is as committed before
    rank = load_rank_manifest(LocalFileSystem(committed), writer.write_id, 0)
    assert rank.state == "failed" and rank.rows == 2  # finalize or resume picks these up
    predstore.finalize(committed)
    assert_rows(predstore.open(committed), range(22))


def test_corrupt_or_missing_manifest_on_open(committed: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        StoreNotCommittedError, match=r"no committed store \(no manifest.json\).*predstore finalize"
    ):
        predstore.open(empty)
    manifest = committed / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:100])
    for record in (committed / "_commits").iterdir():
        record.write_bytes(record.read_bytes()[:100])
    with pytest.raises(CorruptStoreError, match="manifest.json is not a readable manifest"):
        predstore.open(committed)


def test_newer_format_version_on_open(committed: Path) -> None:
    manifest = committed / "manifest.json"
    doc = json.loads(manifest.read_bytes())
    doc["format_version"] = 3
    manifest.write_text(json.dumps(doc))
    with pytest.raises(FormatVersionError, match="format version 3.*upgrade"):
        predstore.open(committed)


def test_the_writer_refuses_work_after_close(tmp_path: Path) -> None:
    writer = predstore.StoreWriter(tmp_path / "s")
    writer.close()
    with pytest.raises(InvalidBatchError, match="is closed"):
        writer.write(batch([0]), [0])


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same write_id"):
        predstore.StoreWriter(tmp_path / "a", rank=0, world_size=2)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\)"):
        predstore.StoreWriter(tmp_path / "a", rank=2, world_size=2, write_id="w")
    with pytest.raises(ValueError, match="mode must be one of"):
        predstore.StoreWriter(tmp_path / "a", mode="upsert")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown codec"):
        predstore.StoreWriter(tmp_path / "a", codec="brotli")
    with pytest.raises(StoreExistsError, match="every write needs a new write_id"):
        write_id = "same"
        predstore.StoreWriter(tmp_path / "b", write_id=write_id).close()
        predstore.StoreWriter(tmp_path / "b", write_id=write_id, mode="append")


# -- parts, shards and memory ---------------------------------------------------


def test_parts_commit_at_shard_boundaries_and_the_rank_manifest_follows(tmp_path: Path) -> None:
    path = tmp_path / "s"
    row_bytes = 300 * 4
    writer = predstore.StoreWriter(
        path, shard_bytes=64 * row_bytes, chunk_bytes=8 * row_bytes, background=False
    )
    fs = LocalFileSystem(path)
    for start in range(0, 200, 24):
        chunk = list(range(start, min(start + 24, 200)))
        writer.write(batch(chunk), chunk)
        rank = load_rank_manifest(fs, writer.write_id, 0)
        assert rank.rows == (start + 24) // 64 * 64  # every committed part is a full shard
    writer.close()
    store = predstore.open(path)
    assert [p.rows for p in store.manifest.parts] == [64, 64, 64, 8]
    (logits,) = store.manifest.arrays
    assert logits.shards[0] == 64 and logits.chunks[0] == 8
    assert len(logits.files) == 4  # one file a shard
    assert [p.array_offsets["logits"] for p in store.manifest.parts] == [0, 64, 128, 192]
    assert_rows(store, range(200))


def test_an_early_commit_skips_to_the_next_shard(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with predstore.StoreWriter(path, shard_bytes=64 * 1200) as writer:
        writer.write(batch(range(10)), range(10))
        writer.commit()
        writer.write(batch(range(10, 15)), range(10, 15))
    store = predstore.open(path)
    assert [p.array_offsets["logits"] for p in store.manifest.parts] == [0, 64]
    assert_rows(store, range(15))


def test_commit_interval_bounds_what_a_crash_can_lose(tmp_path: Path) -> None:
    writer = predstore.StoreWriter(tmp_path / "s", commit_interval=0.05, background=False)
    writer.write(batch([0]), [0])
    time.sleep(0.1)
    writer.write(batch([1]), [1])
    assert writer.rows_committed == 2
    writer.close()


@pytest.mark.parametrize("background", [False, True])
def test_memory_stays_bounded_by_the_buffers(tmp_path: Path, background: bool) -> None:
    """Ten times the rows take no more memory to write: buffers are bounded, not grown with the data."""

    def peak_bytes(rows: int) -> int:
        tracemalloc.start()  # numpy reports its buffers to tracemalloc, from every thread
        writer = predstore.StoreWriter(
            tmp_path / f"s{rows}",
            shard_bytes=128 * 1200,
            row_group_bytes=4096,
            background=background,
        )
        for start in range(0, rows, 50):
            writer.write(batch(range(start, start + 50)), range(start, start + 50))
        writer.commit()
        peak = tracemalloc.get_traced_memory()[1]  # writing; finalize then reads every index once
        tracemalloc.stop()
        writer.close()
        assert len(predstore.open(tmp_path / f"s{rows}")) == rows
        return peak

    small, large = peak_bytes(3000), peak_bytes(30_000)
    extra_payload = 27_000 * (300 * 4 + 8 + 4)
    # What grows is the list of committed parts (a few hundred bytes each), not the buffers.
    assert large - small < 0.1 * extra_payload, (small, large)


def test_data_files_stay_near_payload_over_16_mib(tmp_path: Path) -> None:
    path = tmp_path / "s"
    rows = 6000
    logits = np.random.default_rng(0).standard_normal((rows, 1000), dtype=np.float32)
    with predstore.StoreWriter(path) as writer:
        for start in range(0, rows, 256):
            part = logits[start : start + 256]
            writer.write(
                {"logits": part, "pred": part.argmax(1)}, np.arange(start, start + len(part))
            )
    store = predstore.open(path)
    data_files = [p for p in path.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    payload = logits.nbytes
    assert len(data_files) <= payload / (16 << 20) + 4
    assert np.array_equal(store.read("logits"), logits)


def test_empty_write_commits_an_empty_store(tmp_path: Path) -> None:
    manifest = predstore.StoreWriter(tmp_path / "s").close()
    assert manifest is not None and manifest.rows == 0
    store = predstore.open(tmp_path / "s")
    assert len(store) == 0 and store.keys() == []
    assert store.scan().collect().height == 0


def test_writer_copies_what_it_buffers(tmp_path: Path) -> None:
    """A caller may reuse its output buffer between batches."""
    out = {
        "v": np.zeros((2, 8), np.float32),
        "big": np.zeros((2, 500), np.float32),
        "r": [np.zeros(3, np.float32)] * 2,
    }
    indices = np.zeros(2, np.int64)
    with predstore.StoreWriter(tmp_path / "s", commit_interval=None) as writer:
        for step in range(3):
            out["v"][:] = step
            out["big"][:] = step
            out["r"][0][:] = step
            indices[:] = [2 * step, 2 * step + 1]
            writer.write(out, indices)
    store = predstore.open(tmp_path / "s")
    assert store.scan(["index"]).collect()["index"].to_list() == list(range(6))
    assert store.read("v")[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert store.read("big")[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert [r[0] for r in store.read("r")][::2] == [0, 1, 2]


def test_several_dataloaders_and_names(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with predstore.StoreWriter(path, expected={0: 3, 1: 2}) as writer:
        writer.write({"y": [1.0, 2.0, 3.0]}, [0, 1, 2], names=["a", "b", "c"])
        writer.write({"y": [4.0, 5.0]}, [0, 1], names=["a", "b"], dataloader_idx=1)
    store = predstore.open(path)
    assert store.read("y", names=["c", "a"]).tolist() == [3.0, 1.0]
    assert store.read("y", names=["b"], dataloader_idx=1).tolist() == [5.0]
    assert {dl: (c.expected, c.unique, c.missing) for dl, c in store.coverage.items()} == {
        0: (3, 3, 0),
        1: (2, 2, 0),
    }


def test_no_temporary_files_remain(tmp_path: Path) -> None:
    write_ranks(tmp_path / "s", [list(range(50))])
    leftovers = [
        p for p in (tmp_path / "s").rglob("*") if ".tmp-" in p.name or p.name.endswith(".partial")
    ]
    assert leftovers == []


def test_rank_manifests_exist_from_the_start(tmp_path: Path) -> None:
    writer = predstore.StoreWriter(tmp_path / "s")
    rank = load_rank_manifest(LocalFileSystem(tmp_path / "s"), writer.write_id, 0)
    assert rank.state == "open" and rank.parts == [] and rank.schema is None
    writer.close()
    assert os.path.exists(tmp_path / "s" / "manifest.json")


def test_an_error_of_the_io_thread_surfaces_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predstore.format.shards import ShardFile

    path = tmp_path / "s"
    writer = predstore.StoreWriter(path, shard_bytes=16 * 1200)
    writer.write(batch(range(16)), range(16))  # fills a shard: written by the I/O thread
    writer.commit()
    failed = threading.Event()

    def disk_full(self, local, encoded):  # type: ignore[no-untyped-def]
        failed.set()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ShardFile, "add", disk_full)
    writer.write(batch(range(16, 32)), range(16, 32))
    assert failed.wait(10)
    time.sleep(0.1)  # the error is kept right after the raise
    with pytest.raises(OSError, match="No space left") as raised:
        writer.write(batch(range(32, 34)), range(32, 34))
    assert any(entry.name == "disk_full" for entry in raised.traceback)
    with pytest.raises(predstore.PredstoreError, match="stopped after an error while writing"):
        writer.write(batch([40]), [40])
    monkeypatch.undo()
    writer.fail()
    rank = load_rank_manifest(LocalFileSystem(path), writer.write_id, 0)
    assert rank.state == "failed" and rank.rows == 16  # what was committed before the error
    predstore.finalize(path)
    assert_rows(predstore.open(path), range(16))


def _noise(rng: np.random.Generator, rows: int) -> np.ndarray:
    """float32[1000] rows of random bits: data no codec can shrink."""
    return rng.integers(0, 2**32, (rows, 1000), dtype=np.uint32).view(np.float32)


def _data_files(root: Path) -> dict[str, int]:
    """Every file of a store but its manifests (store, history and rank manifests) and the
    empty file local committers lock while publishing."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file()
        and p.name not in ("manifest.json", ".manifest.json.lock")
        and p.parent.name != "_commits"
        and not p.name.startswith("rank-")
    }


@pytest.mark.parametrize("rows", [10, 262, 300, 1000])
def test_a_small_store_pays_for_no_padding(tmp_path: Path, rows: int) -> None:
    rng = np.random.default_rng(rows)
    logits = _noise(rng, rows)
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"logits": logits}, indices=np.arange(rows))
    files = _data_files(tmp_path / "s")
    assert sorted(Path(f).name for f in files) == ["0", "r00000-000000.parquet", "zarr.json"]
    raw = logits.nbytes
    assert sum(files.values()) <= raw * 1.02 + 8 * 1024, (raw, files)
    store = predstore.open(tmp_path / "s")
    assert np.array_equal(store.read("logits").view(np.uint32), logits.view(np.uint32))
    (array,) = store.manifest.arrays
    stored = zarr.open_array(str(tmp_path / "s" / array.path), mode="r")[:rows]
    assert np.array_equal(stored.view(np.uint32), logits.view(np.uint32))  # zarr reads it too


def test_many_small_appends_cost_at_most_a_tenth_more_than_their_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    written = []
    for i in range(30):
        logits = _noise(rng, 10)
        with predstore.StoreWriter(tmp_path / "s", mode="append" if i else "error") as writer:
            writer.write({"logits": logits}, indices=np.arange(10 * i, 10 * i + 10))
        written.append(logits)
    files = _data_files(tmp_path / "s")
    assert len(files) == 30 * 3  # per write: one shard, its zarr.json, one Parquet part
    raw = sum(w.nbytes for w in written)
    assert sum(files.values()) <= raw * 1.10, (raw, sum(files.values()))
    got = predstore.open(tmp_path / "s").read("logits")
    assert np.array_equal(got.view(np.uint32), np.concatenate(written).view(np.uint32))


# -- None, odd keys, wide ints, failed first batches ---------------------------


def test_a_bare_none_is_null_for_a_declared_key(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s", keys={"note": KeySpec(dtype="string")}) as writer:
        writer.write({"note": None, "x": [1.0, 2.0]}, [0, 1])
        writer.write({"note": ["late", None], "x": [3.0, 4.0]}, [2, 3])
        writer.write({"note": None, "x": [5.0, 6.0]}, [4, 5])
    store = predstore.open(tmp_path / "s")
    assert store.read("note").tolist() == [None, None, "late", None, None, None]
    assert store.schema.keys["note"].nullable


def test_null_vectors_and_masked_arrays_read_back_as_written(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s", background=False) as writer:
        writer.write({"v": np.arange(6, dtype=np.float32).reshape(3, 2)}, [0, 1, 2])
        writer.write({"v": None}, [3, 4])
        writer.commit()
        masked = np.ma.masked_array(np.full((2, 2), 9, np.float32), mask=[[1, 1], [0, 0]])
        writer.write({"v": masked}, [5, 6])
    store = predstore.open(tmp_path / "s")
    got = store.read("v", [6, 4, 2, 5])  # rows of both parts, nulls among them, out of order
    assert got.mask[:, 0].tolist() == [False, True, False, True]
    assert got[0].tolist() == [9, 9] and got[2].tolist() == [4, 5]
    assert store.read("v").mask[:, 1].tolist() == [False] * 3 + [True] * 3 + [False]


def test_a_key_none_at_first_takes_the_type_a_later_batch_shows(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"score": None, "x": np.zeros((2, 3), np.float32)}, [0, 1])
        writer.write({"score": None, "x": np.ones((2, 3), np.float32)}, [2, 3])
        writer.write({"score": torch.tensor([0.5, 1.5]), "x": np.ones((2, 3), np.float32)}, [4, 5])
        writer.write({"score": None, "x": np.ones((2, 3), np.float32)}, [6, 7])
    store = predstore.open(tmp_path / "s")
    score = store.read("score")
    assert store.schema.keys["score"].dtype == "float32"
    assert score.mask.tolist() == [True] * 4 + [False] * 2 + [True] * 2
    assert score[4:6].tolist() == [0.5, 1.5]
    assert store.read("x").tolist()[:2] == [[0.0] * 3] * 2  # the held batches, kept exactly


def test_held_batches_are_copies(tmp_path: Path) -> None:
    buffer = np.zeros((2, 3), np.float32)
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"note": None, "x": buffer}, [0, 1])
        buffer += 7  # the caller reuses its buffer before the type of 'note' is known
        writer.write({"note": ["a", "b"], "x": buffer}, [2, 3])
    assert predstore.open(tmp_path / "s").read("x")[:, 0].tolist() == [0, 0, 7, 7]


def test_a_key_that_is_never_anything_but_none(tmp_path: Path) -> None:
    warns = pytest.warns(UserWarning, match=r"keys \['note'\] were None in every row .*KeySpec")
    with warns, predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"note": None, "x": [1, 2]}, [0, 1])
    store = predstore.open(tmp_path / "s")
    assert store.read("note").tolist() == [None, None]
    assert store.read("x").tolist() == [1, 2]


def test_none_for_a_zarr_key_is_an_error_naming_it(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"logits": np.zeros((2, 1000), np.float32)}, [0, 1])
        with pytest.raises(SchemaError, match=r"key 'logits' is None in this batch.*Zarr"):
            writer.write({"logits": None}, [2, 3])
        writer.write({"logits": np.ones((2, 1000), np.float32)}, [2, 3])
    assert predstore.open(tmp_path / "s").manifest.rows == 4
    warns = pytest.warns(UserWarning, match=r"keys \['logits'\] were None in every row")
    with warns, predstore.StoreWriter(tmp_path / "t") as writer:
        writer.write({"logits": None, "k": [1, 2]}, [0, 1])
        with pytest.raises(SchemaError, match=r"key 'logits' is None in this batch.*Zarr"):
            writer.write({"logits": np.ones((2, 1000), np.float32), "k": [3, 4]}, [2, 3])


def test_long_and_odd_keys_work(tmp_path: Path) -> None:
    keys = ["k" * 300, "é" * 200, "a/b", "..", "CON", "sp ace", "x" * 299 + "y"]
    values = {k: np.full((2, 300), i, np.float32) for i, k in enumerate(keys)}
    with predstore.StoreWriter(tmp_path / "s", keys={"*": "zarr"}) as writer:
        writer.write(values, [0, 1])
    store = predstore.open(tmp_path / "s")
    for i, key in enumerate(keys):
        assert store.read(key, [1])[0, 0] == i
    assert all(len(entry.path.rsplit("/", 1)[-1]) <= 120 for entry in store.manifest.arrays)


class FailingZarrFileSystem(LocalFileSystem):
    """A local store whose first Zarr array cannot be created (a transient I/O error)."""

    failures = 1

    def zarr_store(self, path: str, *, read_only: bool) -> object:
        if not read_only and self.failures:
            self.failures -= 1
            raise OSError(5, "Input/output error", path)
        return super().zarr_store(path, read_only=read_only)


def test_a_failed_first_batch_fixes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    fs = FailingZarrFileSystem(path)
    with predstore.StoreWriter(path, filesystem=fs) as writer:
        with pytest.raises(OSError, match="Input/output error"):
            writer.write({"big": np.zeros((2, 1000), np.float32)}, [0, 1])
        assert writer.schema is None
        writer.write({"small": [1, 2]}, [0, 1])  # another first batch, other keys
    store = predstore.open(path)
    assert list(store.schema.keys) == ["small"] and store.read("small").tolist() == [1, 2]


def test_wide_python_ints_are_stored_exactly(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"u": [2**63 + 1, 1, 2, 3]}, [0, 1, 2, 3])
        writer.write({"u": [4, 5]}, [4, 5])  # Python ints fit the key's uint64
        with pytest.raises(
            SchemaError, match=r"key 'u': the value -1 does not fit its dtype uint64"
        ):
            writer.write({"u": [-1, 5]}, [6, 7])
    assert predstore.open(tmp_path / "s").read("u").tolist() == [2**63 + 1, 1, 2, 3, 4, 5]
    with predstore.StoreWriter(tmp_path / "t") as writer:
        writer.write({"i": [1, 2]}, [0, 1])
        with pytest.raises(
            SchemaError, match=r"the value 9223372036854775809 does not fit its dtype int64.*uint64"
        ):
            writer.write({"i": [2**63 + 1, 1]}, [2, 3])
    with predstore.StoreWriter(tmp_path / "d", keys={"u": KeySpec(dtype="uint64")}) as writer:
        writer.write({"u": [1, 2]}, [0, 1])
        writer.write({"u": [2**64 - 1, 2]}, [2, 3])
    assert predstore.open(tmp_path / "d").read("u").tolist() == [1, 2, 2**64 - 1, 2]


def test_a_type_revealed_that_held_batches_cannot_hold_refuses_the_batch(tmp_path: Path) -> None:
    warns = pytest.warns(UserWarning, match=r"keys \['logits'\] were None in every row")
    with warns, predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"logits": None, "note": None}, [0, 1])
        with pytest.raises(SchemaError, match=r"key 'logits' is None in this batch.*Zarr"):
            writer.write({"logits": np.ones((2, 1000), np.float32), "note": None}, [2, 3])
        writer.write({"logits": None, "note": ["a", "b"]}, [2, 3])
    store = predstore.open(tmp_path / "s")
    assert store.schema.keys["logits"].dtype == "string"  # never shown a value: a warning said so
    assert store.read("note").tolist() == [None, None, "a", "b"]


def test_lent_values_are_encoded_in_place_and_released_once_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``release``, whole chunks are encoded from the caller's rows, and the rows are the
    caller's again only once their chunks are in the shard file."""
    from predstore.format.shards import ShardFile

    events: list[str] = []
    add = ShardFile.add

    def slow_add(self: ShardFile, local: int, pieces: tuple[object, ...]) -> None:
        time.sleep(0.02)  # a slow disk: the caller would refill the rows before they are written
        add(self, local, pieces)
        events.append("written")

    monkeypatch.setattr(ShardFile, "add", slow_add)
    rows = np.zeros((4, 512), np.float32)  # 2 KiB a row: Zarr, one chunk of 4 rows per batch

    def release() -> None:
        events.append("released")
        rows[:] = -1  # the caller refills its buffer at once

    with predstore.StoreWriter(tmp_path / "s", chunk_bytes=8 << 10, commit_interval=None) as w:
        for step in range(3):
            rows[:] = step
            w.write({"big": rows}, np.arange(4 * step, 4 * step + 4), release=release)
            w.commit()  # waits for the jobs: the rows are refilled only after their release
        with pytest.raises(predstore.InvalidBatchError):
            w.write({"big": rows}, [-1, 0, 1, 2], release=release)  # refused: released at once
    assert events == ["written", "released"] * 3 + ["released"]
    stored = predstore.open(tmp_path / "s").read("big")
    assert stored[:, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert (stored == stored[:, :1]).all()
