"""metrics.csv: append-only, stable columns, atomic header growth."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from predstore.registry.rundir.metrics_csv import MetricsCsv


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_new_columns_are_added_at_the_end_without_moving_rows(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    table = MetricsCsv(path)
    table.open()
    table.append([{"step": 0, "loss": 0.5}, {"step": 1, "loss": 0.25}])
    before = path.read_text().splitlines()
    table.append([{"step": 2, "val_loss": 0.75, "loss": 0.125}])
    rows = _read(path)
    assert rows[0] == ["step", "loss", "val_loss"]
    # Earlier rows are byte-for-byte the same, padded with one empty cell.
    assert [",".join(r) for r in rows[1:3]] == [line + "," for line in before[1:]]
    assert rows[3] == ["2", "0.125", "0.75"]
    assert table.rows == 3
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary left


def test_reopening_keeps_header_order_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    first = MetricsCsv(path)
    first.open()
    first.append([{"step": 0, "b": 1.0, "a": 2.0}])
    second = MetricsCsv(path)
    replay = second.open()
    assert second.columns == ["step", "b", "a"]
    assert replay == [{"step": "0", "b": "1.0", "a": "2.0"}]
    second.append([{"a": 3.0, "step": 1, "b": 4.0}])
    assert _read(path) == [["step", "b", "a"], ["0", "1.0", "2.0"], ["1", "4.0", "3.0"]]
    assert second.open(skip=1) == [{"step": "1", "b": "4.0", "a": "3.0"}]


def test_a_torn_last_line_is_dropped_on_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss\n0,0.5\n1,0.2")  # killed in the middle of "1,0.25\n"
    table = MetricsCsv(path)
    assert table.open() == [{"step": "0", "loss": "0.5"}]
    assert "incomplete line" in caplog.text
    table.append([{"step": 1, "loss": 0.25}])
    assert _read(path) == [["step", "loss"], ["0", "0.5"], ["1", "0.25"]]


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    table = MetricsCsv(path)
    table.open()
    table.append([{"step": 0, "loss": 0.5}])
    content = path.read_bytes()
    path.rename(tmp_path / "aside.csv")
    path.mkdir()  # now nothing can be written at this path
    with pytest.raises(IsADirectoryError):
        table.append([{"step": 1, "loss": 0.25}])
    path.rmdir()
    (tmp_path / "aside.csv").rename(path)
    assert path.read_bytes() == content
    table.append([{"step": 1, "loss": 0.25}])  # the caller retries with the same rows
    assert _read(path)[1:] == [["0", "0.5"], ["1", "0.25"]]


def test_values_keep_full_precision_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    table = MetricsCsv(path)
    table.open()
    table.append([{"step": 0, "x": 0.1 + 0.2, "flag": True, "note": None}])
    assert _read(path)[1] == ["0", repr(0.1 + 0.2), "1", ""]
