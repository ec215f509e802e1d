"""summary.json statistics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from predstore.errors import CorruptRunError
from predstore.registry.rundir.summary import (
    Summary,
    decode_value,
    encode_summary,
    encode_value,
    read_summary,
)


def test_statistics_follow_the_rows() -> None:
    values = [0.9, 0.5, 0.7, 0.5, 0.8]
    summary = Summary()
    for step, value in enumerate(values):
        summary.add_row({"step": step, "epoch": step // 2, "loss": value})
    stats = summary.metrics["loss"]
    assert (stats.last, stats.min, stats.max, stats.count) == (0.8, 0.5, 0.9, 5)
    assert (stats.step, stats.epoch) == (4, 2)
    assert stats.min_step == values.index(min(values))  # the first time the minimum was reached
    assert stats.max_step == 0
    assert summary.csv_rows == 5
    assert "step" not in summary.metrics
    assert "epoch" not in summary.metrics


def test_nan_counts_but_never_becomes_min_or_max() -> None:
    summary = Summary()
    for step, value in enumerate([math.nan, 2.0, math.inf, math.nan]):
        summary.add_row({"step": step, "loss": value})
    stats = summary.metrics["loss"]
    assert math.isnan(stats.last)
    assert (stats.min, stats.max, stats.count, stats.nan_count) == (2.0, math.inf, 4, 2)
    doc = json.loads(encode_summary(summary, "r1"))
    assert doc["metrics"]["loss"]["last"] == "nan"
    assert doc["metrics"]["loss"]["max"] == "inf"


def test_csv_text_cells_are_replayed_like_logged_values() -> None:
    logged, replayed = Summary(), Summary()
    rows = [{"step": 0, "loss": 0.25, "acc": None}, {"step": 1, "loss": 0.125, "acc": 0.5}]
    for row in rows:
        logged.add_row(row)
        replayed.add_row({k: "" if v is None else repr(v) for k, v in row.items()})
    assert replayed.to_json("r")["metrics"] == logged.to_json("r")["metrics"]


def test_a_file_round_trip_continues_the_statistics(tmp_path: Path) -> None:
    first = Summary()
    for step, value in enumerate([3.0, 1.0]):
        first.add_row({"step": step, "loss": value})
    path = tmp_path / "summary.json"
    path.write_bytes(encode_summary(first, "r1"))
    resumed, doc = read_summary(path)
    assert doc["run_id"] == "r1"
    for step, value in enumerate([2.0, 0.5], start=2):
        resumed.add_row({"step": step, "loss": value})
    stats = resumed.metrics["loss"]
    assert (stats.count, stats.min, stats.max, stats.last, stats.min_step) == (4, 0.5, 3.0, 0.5, 3)
    assert resumed.csv_rows == 4


@pytest.mark.parametrize("value", [1.5, math.nan, math.inf, -math.inf])
def test_value_encoding_round_trips(value: float) -> None:
    decoded = decode_value(encode_value(value))
    assert decoded == value or (math.isnan(decoded) and math.isnan(value))


def test_unreadable_summaries_are_corrupt_run_errors(
    tmp_path: Path, damaged_run_files: None
) -> None:
    path = tmp_path / "summary.json"
    path.write_text("{")
    with pytest.raises(CorruptRunError, match="not valid JSON"):
        read_summary(path)
    path.write_text('{"schema_version": 1}')
    with pytest.raises(CorruptRunError, match="does not follow the summary schema"):
        read_summary(path)
