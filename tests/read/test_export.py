from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import predstore
from predstore.read.export import export
from support import batch


@pytest.fixture
def store(tmp_path: Path) -> predstore.Store:
    path = tmp_path / "s"
    with predstore.StoreWriter(path) as writer:
        for rows in ([5, 3, 9], [0, 1]):
            outputs = batch(rows)
            outputs["seg"] = [np.full((2, int(i) + 1), i, np.int16) for i in rows]
            outputs["seg"] = [np.full((2, 300 + int(i)), i, np.int16) for i in rows]
            writer.write(outputs, rows, names=[f"n{i}" for i in rows])
        writer.write(batch([4]) | {"seg": [np.zeros((2, 300), np.int16)]}, [4], dataloader_idx=1)
    return predstore.open(path)


def test_parquet_export_is_sorted_and_holds_arrays(store: predstore.Store, tmp_path: Path) -> None:
    out = tmp_path / "all.parquet"
    assert export(store, out) == 6
    frame = pl.read_parquet(out)
    assert frame.select("dataloader_idx", "index").rows() == [
        (0, 0),
        (0, 1),
        (0, 3),
        (0, 5),
        (0, 9),
        (1, 4),
    ]
    assert np.array_equal(
        np.stack(frame["logits"].to_numpy()[:5]), batch([0, 1, 3, 5, 9])["logits"]
    )
    assert frame["seg.shape"].to_list()[2] == [2, 303]
    assert frame["seg"].to_list()[2] == [3] * 606


def test_csv_export_without_arrays(store: predstore.Store, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    export(store, out, format="csv", arrays="skip")
    frame = pl.read_csv(out)
    assert frame.columns == ["index", "dataloader_idx", "name", "pred", "prob"]
    assert frame["name"].to_list()[:2] == ["n0", "n1"]


def test_csv_export_writes_arrays_as_json(store: predstore.Store, tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    export(store, out, format="csv")
    first = pl.read_csv(out).row(0, named=True)
    assert len(json.loads(first["logits"])) == 300


def test_bad_choices_are_refused(store: predstore.Store, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be"):
        export(store, tmp_path / "x", format="xlsx")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()
