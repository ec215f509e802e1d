from __future__ import annotations

from pathlib import Path

import duckdb
import ml_dtypes
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

import predstore
from predstore.errors import InvalidBatchError, MissingRowsError, UnknownKeyError
from support import batch, write_ranks


@pytest.fixture
def store(tmp_path: Path) -> predstore.Store:
    path = tmp_path / "s"
    rng = np.random.default_rng(0)
    order = rng.permutation(60)
    with predstore.StoreWriter(path, shard_bytes=16 * 1200, chunk_bytes=4 * 1200) as writer:
        for start in range(0, 60, 7):
            rows = order[start : start + 7]
            outputs = batch(rows)
            outputs["boxes"] = [np.full((int(i) % 4, 4), i, np.float32) for i in rows]
            outputs["mask"] = [np.full((int(i) % 3 + 1, 20, 30), i % 250, np.uint8) for i in rows]
            outputs["half"] = torch.tensor(rows, dtype=torch.bfloat16)
            outputs["label"] = [f"cls{int(i) % 3}" for i in rows]
            writer.write(outputs, rows, names=[f"s{i}" for i in rows])
    return predstore.open(path)


def test_read_any_key_by_index_in_the_order_asked(store: predstore.Store) -> None:
    asked = [42, 0, 17, 42, 59]
    expected = batch(asked)
    for key in ("logits", "pred", "prob"):
        assert np.array_equal(store.read(key, asked), expected[key])
    assert [b[0, 0] if len(b) else None for b in store.read("boxes", asked)] == [
        42,
        None,
        17,
        42,
        59,
    ]
    assert [m.shape for m in store.read("mask", asked)] == [
        (1, 20, 30),
        (1, 20, 30),
        (3, 20, 30),
        (1, 20, 30),
        (3, 20, 30),
    ]
    assert store.read("label", asked).tolist() == ["cls0", "cls0", "cls2", "cls0", "cls2"]


def test_read_by_name_and_everything(store: predstore.Store) -> None:
    assert store.read("pred", names=["s5", "s12"]).tolist() == [5, 5]
    assert np.array_equal(store.read("logits"), batch(range(60))["logits"])
    assert len(store.read("mask")) == 60


def test_bfloat16_comes_back_as_bfloat16(store: predstore.Store) -> None:
    values = store.read("half", [3, 4])
    assert values.dtype == ml_dtypes.bfloat16 and values.tolist() == [3, 4]
    tensor = store.read("half", [3, 4], as_torch=True)
    assert tensor.dtype == torch.bfloat16 and tensor.tolist() == [3.0, 4.0]
    assert [t.dtype for t in store.read("mask", [1], as_torch=True)] == [torch.uint8]


def test_reads_touch_only_the_chunks_needed(
    store: predstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predstore.format.fs import LocalFileSystem

    reads: list[tuple[str, int]] = []
    mapped: list[str] = []
    original, original_map = LocalFileSystem.read_range, LocalFileSystem.map_file

    def spy(self, path, start, length):  # type: ignore[no-untyped-def]
        reads.append((path, length))
        return original(self, path, start, length)

    def spy_map(self, path):  # type: ignore[no-untyped-def]
        mapped.append(path)
        return original_map(self, path)

    monkeypatch.setattr(LocalFileSystem, "read_range", spy)
    monkeypatch.setattr(LocalFileSystem, "map_file", spy_map)
    fresh = predstore.open(store.path)
    assert np.array_equal(fresh.read("logits", [10]), batch([10])["logits"])
    logits = next(a for a in fresh.manifest.arrays if a.key == "logits")
    assert len(logits.files) > 1
    shard = {path for path, _ in reads if "logits" in path}
    assert len(shard) == 1 and set(mapped) <= shard  # one shard file of the several
    # Its index read; its chunks through the mapping (the page cache reads only what is touched).
    assert sum(n for _, n in reads) < max(logits.files.values())


def test_scan_and_pandas(store: predstore.Store) -> None:
    frame = store.scan(sort=True).collect()
    assert frame.columns == [
        "index",
        "dataloader_idx",
        "name",
        "pred",
        "prob",
        "boxes",
        "half",
        "label",
    ]
    assert frame["index"].to_list() == list(range(60))
    assert frame.schema["boxes"] == pl.List(pl.Array(pl.Float32, 4))
    counts = store.scan().group_by("label").agg(pl.len()).sort("label").collect()
    assert counts["len"].to_list() == [20, 20, 20]
    pandas = store.to_pandas(["index", "pred"])
    assert pandas["pred"].tolist() == [i % 7 for i in range(60)]
    with pytest.raises(UnknownKeyError, match="'logits' is a Zarr key: read it with store.read"):
        store.scan(["logits"])


def test_other_tools_read_the_parts_from_the_manifest(store: predstore.Store) -> None:
    paths = store.part_paths
    assert pq.read_table(paths).num_rows == 60
    assert pl.read_parquet(paths).height == 60
    total = duckdb.sql(f"select count(*), sum(pred) from read_parquet({paths!r})").fetchall()[0]
    assert total == (60, sum(i % 7 for i in range(60)))


def test_errors_name_what_was_asked_and_what_exists(store: predstore.Store) -> None:
    with pytest.raises(
        UnknownKeyError, match=r"key 'logit' is not in the store; it holds \['logits'"
    ):
        store.read("logit")
    with pytest.raises(
        MissingRowsError,
        match=r"1 of the 2 indices asked are not in dataloader 0.*first: \[60\].*0\.\.59",
    ):
        store.read("pred", [1, 60])
    with pytest.raises(MissingRowsError, match="not in dataloader 3"):
        store.read("pred", [1], dataloader_idx=3)
    with pytest.raises(MissingRowsError, match="name 'nobody' is not in dataloader 0"):
        store.read("pred", names=["nobody"])
    with pytest.raises(InvalidBatchError, match="indices or names, not both"):
        store.read("pred", [1], names=["s1"])


def test_null_rows_of_every_parquet_dtype_read_back_masked(tmp_path: Path) -> None:
    """A null row reads as masked, whatever its key's type (booleans included)."""
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"flag": [None, False, True], "score": [1.5, None, 2.0]}, [0, 1, 2])
    store = predstore.open(tmp_path / "s")
    flag, score = store.read("flag"), store.read("score")
    assert flag.mask.tolist() == [True, False, False] and flag[1:].tolist() == [False, True]
    assert score.mask.tolist() == [False, True, False] and score[[0, 2]].tolist() == [1.5, 2.0]


def test_duplicate_names_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with predstore.StoreWriter(path) as writer:
        writer.write({"y": [1, 2, 3]}, [0, 1, 2], names=["a", "b", "a"])
    with pytest.raises(
        MissingRowsError,
        match=r"name 'a' is not unique in dataloader 0: rows with indices \[0, 2\]",
    ):
        predstore.open(path).read("y", names=["a"])


def test_duplicates_read_as_the_first_committed_row(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_id = write_ranks(path, [[0, 1, 2], [2, 3]], finalize=False)
    predstore.finalize(path)
    store = predstore.open(path)
    assert store.coverage[0].duplicates == 1 and len(store) == 4
    assert store.scan().collect()["index"].sort().to_list() == [0, 1, 2, 3]
    first = next(p for p in store.manifest.parts if p.rank == 0)
    assert first.write_id == write_id and store.rows.part[store.rows.locate([2])][
        0
    ] == store.manifest.parts.index(first)


def test_repr_names_rows_and_keys(store: predstore.Store) -> None:
    text = repr(store)
    assert (
        "60 rows" in text
        and "logits: float32[300] (zarr)" in text
        and "mask: uint8[?, ?, ?] (zarr)" in text
    )


@pytest.mark.parametrize(
    "indices",
    [[True, False], np.array([True, False]), 1.5, [1.5], "0", ["0"], [[0, 1], [2, 3]], [0, None]],
    ids=["bools", "bool-array", "float", "floats", "string", "strings", "2-d", "none"],
)
def test_read_refuses_anything_but_integer_indices(store: predstore.Store, indices) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidBatchError, match="indices must be"):
        store.read("pred", indices)


def test_read_takes_every_integer_kind(store: predstore.Store) -> None:
    expected = store.read("pred", [1, 2])
    for indices in ([1, 2], np.array([1, 2], np.uint8), torch.tensor([1, 2]), range(1, 3)):
        assert np.array_equal(store.read("pred", indices), expected)
    assert store.read("pred", []).shape == (0,)
    with pytest.raises(MissingRowsError, match=str(2**64 - 1)):
        store.read("pred", np.array([2**64 - 1], np.uint64))


# -- a Store behaves like its peers (HF datasets, polars, Lance) -------------------


def test_rows_by_position_and_iteration_agree_with_len(store: predstore.Store) -> None:
    assert len(store) == 60
    first, last = store[0], store[-1]
    assert (first["index"], first["name"], last["index"]) == (0, "s0", 59)
    assert list(first) == ["index", "dataloader_idx", "name", *store.keys()]
    assert np.array_equal(first["logits"], batch([0])["logits"][0])
    assert first["pred"] == 0 and isinstance(first["pred"], int) and first["label"] == "cls0"
    assert first["mask"].shape == (1, 20, 30) and first["half"].dtype == ml_dtypes.bfloat16
    rows = list(store)
    assert len(rows) == len(store) and [r["index"] for r in rows] == list(range(60))
    assert [r["index"] for r in store[10:13]] == [10, 11, 12]
    assert np.array_equal(rows[33]["boxes"], store.read("boxes", [33])[0])
    with pytest.raises(IndexError, match="row 60 is out of range for a store of 60 rows"):
        store[60]
    with pytest.raises(TypeError, match=r"store\.read\(key\)"):
        store["logits"]  # type: ignore[index]


def test_row_by_index_or_name(store: predstore.Store) -> None:
    by_index, by_name = store.row(17), store.row(name="s17")
    assert by_index["index"] == by_name["index"] == 17
    assert np.array_equal(by_index["mask"], by_name["mask"])
    assert np.array_equal(by_index["logits"], batch([17])["logits"][0])
    with pytest.raises(MissingRowsError, match="not in dataloader 0"):
        store.row(99)
    with pytest.raises(InvalidBatchError, match="index or its name"):
        store.row(1, name="s1")


def test_tables_hold_every_key(store: predstore.Store) -> None:
    head = store.head(3)
    assert isinstance(head, pl.DataFrame) and head["index"].to_list() == [0, 1, 2]
    assert head.columns == store.columns
    assert store.columns[:3] == ["index", "dataloader_idx", "name"]
    assert {"logits", "mask", "mask.shape", "boxes", "half", "label"} <= set(store.columns)
    frame = store.to_polars()
    assert frame.height == 60 and frame.columns == store.columns
    assert np.array_equal(frame["logits"].to_numpy()[:2], batch([0, 1])["logits"])
    assert frame["mask.shape"][5].to_list() == [3, 20, 30]
    table = store.to_arrow()
    assert table.num_rows == 60 and table.column_names == store.columns
    pandas = store.to_pandas(arrays=True)
    assert list(pandas.columns) == store.columns
    assert np.array_equal(np.asarray(pandas["logits"][7]), batch([7])["logits"][0])
    parquet_only = store.to_pandas()
    assert "logits" not in parquet_only.columns and "boxes" in parquet_only.columns


def test_to_hf_is_a_datasets_dataset(store: predstore.Store) -> None:
    datasets = pytest.importorskip("datasets")
    ds = store.to_hf()
    assert isinstance(ds, datasets.Dataset) and len(ds) == len(store)
    assert ds[4]["name"] == "s4" and len(ds[4]["logits"]) == 300


def test_repr_shows_rows_keys_and_size(store: predstore.Store) -> None:
    text = repr(store)
    assert "60 rows, 7 keys" in text and " on disk" in text


@pytest.mark.parametrize("codec", ["blosc-lz4", "none"])
def test_one_row_chunks_read_in_any_order(tmp_path: Path, codec: str) -> None:
    # Volumes: a chunk holds one row, decoded straight into its place in the result
    # (compressed), or a view of the mapped shard (stored as it is).
    path = tmp_path / "s"
    volumes = np.arange(30 * 8 * 8 * 8, dtype=np.float16).reshape(30, 8, 8, 8) % 7
    with predstore.StoreWriter(
        path, keys={"vol": "zarr"}, chunk_bytes=1024, shard_bytes=8 * 1024, codec=codec
    ) as w:
        for start in range(0, 30, 4):
            w.write({"vol": volumes[start : start + 4]}, np.arange(start, min(start + 4, 30)))
    store = predstore.open(path)
    entry = next(a for a in store.manifest.arrays if a.key == "vol")
    assert entry.chunks[0] == 1 and len(entry.files) > 1
    asked = [29, 3, 17, 3, 0, 16]
    assert np.array_equal(store.read("vol", asked), volumes[asked])
    dataset = store.dataset(["vol"], as_torch=False, cache_bytes=1024)  # too small to hold it
    items = dataset.__getitems__(asked)
    assert all(
        np.array_equal(item["vol"], volumes[i]) for item, i in zip(items, asked, strict=True)
    )


def test_reads_fall_back_to_ranged_reads_when_files_cannot_be_mapped(
    store: predstore.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmap

    class OutOfMappings(mmap.mmap):  # what mmap raises past vm.max_map_count
        def __new__(cls, *args: object, **kwargs: object) -> OutOfMappings:
            raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", OutOfMappings)
    fresh = predstore.open(store.path)
    asked = [42, 0, 17, 42, 59]
    assert np.array_equal(fresh.read("logits", asked), batch(asked)["logits"])
    items = fresh.dataset(["logits"], as_torch=False).__getitems__(asked)
    assert all(
        np.array_equal(item["logits"], row)
        for item, row in zip(items, batch(asked)["logits"], strict=True)
    )
