"""Typed polars frames from cache rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import polars as pl
import pytest

from predstore.registry.query.dataframes import BASE_COLUMNS, runs_frame, wide_frame
from predstore.registry.query.field_sql import Field


@pytest.mark.parametrize(
    ("numbers", "texts", "dtype", "values"),
    [
        ([1.0, None, 3.0], ["1", None, "3"], pl.Int64, [1, None, 3]),
        ([0.5, 2.0], ["0.5", "2"], pl.Float64, [0.5, 2.0]),
        ([None, None], ["true", "false"], pl.Boolean, [True, False]),
        ([None, 1.0], ["adam", "1"], pl.String, ["adam", "1"]),
        ([None], [None], pl.String, [None]),
    ],
)
def test_hyperparameter_columns_take_the_narrowest_type(
    numbers: list, texts: list, dtype: pl.DataType, values: list
) -> None:
    runs = [f"/r/{i}" for i in range(len(numbers))]
    field = Field("hparam", "lr")
    per_run = {d: (n, t) for d, n, t in zip(runs, numbers, texts, strict=True)}
    frame = wide_frame(set(runs), {"hparams.lr": (field, per_run)})
    assert frame.schema["hparams.lr"] == dtype
    assert frame["hparams.lr"].to_list() == values


def test_run_listing_types_and_order() -> None:
    row = {
        "run_id": "r1",
        "display_name": None,
        "status": "running",
        "created_at": "2024-01-01T00:00:00.000+00:00",
        "started_at": "2024-01-01T01:00:00+01:00",
        "updated_at": "not a time",
        "ended_at": None,
        "last_seen": 1_704_067_200.0,
        "attempt": 2,
        "step": 10,
        "host": "h",
        "tags": json.dumps(["a", "b"]),
        "notes": "",
        "best_checkpoint": None,
        "error": None,
        "media_count": 0,
        "run_dir": "/r/1",
    }
    extra = [Field("summary", "loss", "min"), Field("summary", "loss", "min_step")]
    frame = runs_frame([(*(row[c] for c in BASE_COLUMNS), 0.25, None, 7, None)], extra)
    assert frame.columns[:6] == [
        "run_id",
        "display_name",
        "status",
        "alive",
        "summary.loss:min",
        "summary.loss:min_step",
    ]
    first = frame.row(0, named=True)
    midnight = datetime(2024, 1, 1, tzinfo=UTC)
    assert first["created_at"] == first["started_at"] == first["last_seen"] == midnight
    assert first["updated_at"] is None
    assert (first["alive"], first["tags"], first["summary.loss:min_step"]) == (True, ["a", "b"], 7)
    assert frame.schema["summary.loss:min_step"] == pl.Int64


def test_wide_columns_are_grouped_by_metric_in_statistic_order() -> None:
    shuffled = [
        Field("summary", "b", "count"),
        Field("summary", "a"),
        Field("summary", "b"),
        Field("summary", "a", "max"),
        Field("summary", "a", "min"),
    ]
    fields = {f.path: (f, {"/r": (1.0, None)}) for f in shuffled}
    frame = wide_frame({"/r"}, fields)
    assert frame.columns == [
        "run_dir",
        "summary.a",
        "summary.a:min",
        "summary.a:max",
        "summary.b",
        "summary.b:count",
    ]
