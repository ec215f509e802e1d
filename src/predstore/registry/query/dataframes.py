"""Turning rows of the registry cache into typed polars DataFrames.

Timestamps become ``Datetime[ms, UTC]``, tags ``List[String]``, counts and
steps ``Int64``. A hyperparameter column takes the narrowest type that holds
every run's value: ``Int64`` when all were written as integers, ``Float64``
when all are numbers, ``Boolean`` when all are booleans, otherwise
``String`` (non-strings as JSON).
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from predstore.registry._time import datetime_from_unix, parse_iso
from predstore.registry.query.field_sql import STATS, Field

_TIMESTAMPS = ("created_at", "started_at", "updated_at", "ended_at")
_INTS = ("attempt", "step", "media_count")
#: The columns of every run listing, in order; ``alive`` and field columns follow ``status``.
BASE_COLUMNS = (
    "run_id",
    "display_name",
    "status",
    "created_at",
    "started_at",
    "updated_at",
    "ended_at",
    "last_seen",
    "attempt",
    "step",
    "host",
    "tags",
    "notes",
    "best_checkpoint",
    "error",
    "media_count",
    "run_dir",
)
_DT = pl.Datetime("ms", "UTC")
SUMMARY_SCHEMA: dict[str, Any] = {
    "metric": pl.String,
    "last": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
    "count": pl.Int64,
    "nan_count": pl.Int64,
    "step": pl.Int64,
    "epoch": pl.Int64,
    "min_step": pl.Int64,
    "max_step": pl.Int64,
}
STORES_SCHEMA: dict[str, Any] = {
    "path": pl.String,
    "rows": pl.Int64,
    "committed_at": pl.String,
    "write_id": pl.String,
}
PROBLEMS_SCHEMA: dict[str, Any] = {"file": pl.String, "message": pl.String, "fatal": pl.Boolean}
_SUMMARY_INT_STATS = frozenset({"count", "nan_count", "step", "epoch", "min_step", "max_step"})


def runs_frame(rows: list[tuple[Any, ...]], extra: list[Field]) -> pl.DataFrame:
    """A run listing: rows of BASE_COLUMNS, then (number, text) pairs of each extra field."""
    n = len(BASE_COLUMNS)
    columns: dict[str, pl.Series] = {}
    for i, name in enumerate(BASE_COLUMNS):
        columns[name] = _base_series(name, [r[i] for r in rows])
    columns["alive"] = pl.Series("alive", [r[2] == "running" for r in rows], pl.Boolean)
    for i, f in enumerate(extra):
        numbers = [r[n + 2 * i] for r in rows]
        texts = [r[n + 2 * i + 1] for r in rows]
        columns[f.path] = _field_series(f, numbers, texts)
    order = ["run_id", "display_name", "status", "alive", *(f.path for f in extra)]
    order += [c for c in BASE_COLUMNS if c not in order]
    return pl.DataFrame([columns[c] for c in order])


def wide_frame(
    selected: set[str], fields: dict[str, tuple[Field, dict[str, tuple[Any, Any]]]]
) -> pl.DataFrame:
    """One row per selected run directory, one column per field: ``fields`` maps each
    output column to its field and, per run directory, its (number, text) value."""
    order = sorted(selected)
    series = [pl.Series("run_dir", order, pl.String)]
    for path in sorted(fields, key=lambda p: _field_order(fields[p][0])):
        f, values = fields[path]
        pairs = [values.get(d, (None, None)) for d in order]
        series.append(_field_series(f, [p[0] for p in pairs], [p[1] for p in pairs]))
    return pl.DataFrame(series)


def _field_order(f: Field) -> tuple[str, int]:
    return (f.name, STATS.index(f.stat) if f.stat in STATS else len(STATS))


def _base_series(name: str, values: list[Any]) -> pl.Series:
    if name in _TIMESTAMPS:
        return pl.Series(name, [parse_iso(v) for v in values], _DT)
    if name == "last_seen":
        return pl.Series(name, [datetime_from_unix(v) for v in values], _DT)
    if name == "tags":
        return pl.Series(name, [json.loads(v) for v in values], pl.List(pl.String))
    if name in _INTS:
        return pl.Series(name, values, pl.Int64)
    return pl.Series(name, values, pl.String)


def _field_series(f: Field, numbers: list[Any], texts: list[Any]) -> pl.Series:
    if f.kind == "summary":
        if f.stat in _SUMMARY_INT_STATS:
            return pl.Series(f.path, [None if n is None else int(n) for n in numbers], pl.Int64)
        return pl.Series(f.path, numbers, pl.Float64)
    if f.kind == "column":
        return _base_series(f.name, numbers)
    present = [(n, t) for n, t in zip(numbers, texts, strict=True) if t is not None]
    if present and all(n is not None for n, _ in present):
        if all(t.lstrip("-").isdigit() for _, t in present):  # written as integers
            return pl.Series(f.path, [None if n is None else int(n) for n in numbers], pl.Int64)
        return pl.Series(f.path, numbers, pl.Float64)
    if present and all(t in ("true", "false") for _, t in present):
        return pl.Series(f.path, [None if t is None else t == "true" for t in texts], pl.Boolean)
    return pl.Series(f.path, texts, pl.String)
