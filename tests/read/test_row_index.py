"""The row index against a reference built from the parts themselves, for every layout of rows.

Parts already in key order keep no row places (nothing is sorted); interleaved
ranks, duplicates, several dataloaders and parts that hold several dataloaders
take the sorting path. Both must give the same answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import predstore
from predstore.errors import InvalidBatchError, MissingRowsError
from predstore.read.row_index import RowIndex, _hash_names
from support import write_ranks


def reference(store: predstore.Store) -> dict[tuple[int, int], tuple[int, int, str | None]]:
    """(dataloader, index) -> (part, row, name) of the first row in manifest order, sorted."""
    first: dict[tuple[int, int], tuple[int, int, str | None]] = {}
    for p, part in enumerate(store.manifest.parts):
        table = pq.read_table(Path(store.path) / part.path)
        keys = zip(
            table["dataloader_idx"].to_pylist(),
            table["index"].to_pylist(),
            table["name"].to_pylist(),
            strict=True,
        )
        for row, (dl, index, name) in enumerate(keys):
            first.setdefault((dl, index), (p, row, name))
    return dict(sorted(first.items()))


def check_against_reference(store: predstore.Store) -> RowIndex:
    rows = RowIndex(store.fs, store.manifest)
    expected = reference(store)
    keys = np.array(list(expected), dtype=np.int64).reshape(-1, 2)
    places = np.array([v[:2] for v in expected.values()], dtype=np.int64).reshape(-1, 2)
    assert len(rows) == len(expected)
    assert rows.index.tolist() == keys[:, 1].tolist()
    positions = np.arange(len(rows))
    assert rows.dataloaders_of(positions).tolist() == keys[:, 0].tolist()
    part, row = rows.locations(positions)  # before the part and row arrays exist
    assert (part.tolist(), row.tolist()) == (places[:, 0].tolist(), places[:, 1].tolist())
    assert rows.part.tolist() == places[:, 0].tolist()
    assert rows.row.tolist() == places[:, 1].tolist()
    assert rows.dataloader_idx.tolist() == keys[:, 0].tolist()
    assert rows.names(positions[::-1]) == [v[2] for v in expected.values()][::-1]
    for dl in {int(d) for d in keys[:, 0]}:
        mine = keys[:, 0] == dl
        span = rows.dataloader(dl)
        assert np.flatnonzero(mine).tolist() == list(range(span.start, span.stop))
        asked = keys[mine, 1][::-1]
        assert rows.locate(asked, dl).tolist() == np.flatnonzero(mine)[::-1].tolist()
        named = [(v[2], at) for at, v in enumerate(expected.values()) if mine[at]]
        assert rows.locate_names([n for n, _ in named], dl).tolist() == [at for _, at in named]
    return rows


def test_parts_in_key_order_keep_no_places(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s", part_bytes=1) as writer:
        for start in range(0, 40, 8):
            indices = list(range(start, start + 8))
            writer.write({"y": indices}, indices, names=[f"n{i}" for i in indices])
    store = predstore.open(tmp_path / "s")
    assert len(store.manifest.parts) > 1
    assert check_against_reference(store)._place is None


def test_a_second_dataloader_starting_low_again_is_still_in_order(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s", part_bytes=1) as writer:
        for dl in (0, 2):
            writer.write({"y": [1, 2, 3]}, [5, 6, 7], names=["a", "b", "c"], dataloader_idx=dl)
    rows = check_against_reference(predstore.open(tmp_path / "s"))
    assert rows._place is None and rows.dataloader(1) == slice(0, 0)


def test_shuffled_rows_and_ranks_with_duplicates_sort_to_the_first_committed(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    order = rng.permutation(50).tolist()
    write_ranks(tmp_path / "s", [order[:30], order[20:] + order[:5]], batch_size=7, part_bytes=1)
    store = predstore.open(tmp_path / "s")
    assert store.coverage[0].duplicates == 15
    assert check_against_reference(store)._place is not None


def test_dataloaders_out_of_order_and_parts_holding_several(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:  # one part, both dataloaders mixed
        for dl, indices in ((1, [3, 1]), (0, [9, 2]), (1, [0]), (0, [4])):
            writer.write(
                {"y": indices}, indices, names=[f"{dl}-{i}" for i in indices], dataloader_idx=dl
            )
    store = predstore.open(tmp_path / "s")
    assert store.manifest.parts[0].dataloaders == [0, 1]
    check_against_reference(store)


def test_names_missing_repeated_colliding_or_not_strings(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"y": [0, 1, 2, 3]}, [0, 1, 2, 3], names=["a", None, "a", "b"])
        writer.write({"y": [4]}, [4], names=["b"], dataloader_idx=1)
    rows = predstore.open(tmp_path / "s").rows
    assert rows.names(np.arange(5)) == ["a", None, "a", "b", "b"]
    assert rows.locate_names(["b"], 0).tolist() == [3]
    assert rows.locate_names(["b"], 1).tolist() == [4]
    with pytest.raises(MissingRowsError, match=r"'a' is not unique in dataloader 0.*\[0, 2\]"):
        rows.locate_names(["b", "a"])
    with pytest.raises(MissingRowsError, match=r"'c' is not in dataloader 0 .*3 named rows"):
        rows.locate_names(["c"])
    with pytest.raises(InvalidBatchError, match="names must be strings, got None"):
        rows.locate_names([None])  # type: ignore[list-item]
    # Equal hashes are compared by name: give every row the hash of the name looked up.
    hashes, positions = rows._name_index()
    for name, found in (("b", [3]), ("c", None)):
        rows.__dict__["_names"] = (np.full_like(hashes, _hash_names([name])[0]), positions)
        if found is None:
            with pytest.raises(MissingRowsError, match=f"'{name}' is not in dataloader 0"):
                rows.locate_names([name])
        else:
            assert rows.locate_names([name]).tolist() == found
