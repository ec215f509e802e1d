"""``summary.json``: per-metric statistics that continue across resumes.

Each metric keeps its last value, min, max, count (NaN included), NaN count,
the step and epoch of the last value, and the steps where min and max were
first reached. ``csv_rows`` says how many data rows of ``metrics.csv`` the
statistics include: the logger writes the CSV first and the summary second,
so on resume it replays only the CSV rows beyond ``csv_rows``.

JSON has no NaN or infinity; such values are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"`` (see :func:`encode_value`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predstore.registry._time import now_iso
from predstore.registry.rundir import json_schemas
from predstore.registry.rundir._read import parse_json, read_regular
from predstore.registry.rundir.files import SUMMARY_VERSION

#: Columns of a metrics row that are coordinates, not metrics.
COORDINATES = frozenset({"step", "epoch"})

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_value(value: float) -> float | str:
    """A metric value as JSON can hold it: finite numbers as is, others as strings."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_value(value: object) -> float:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a metric value: {value!r}")


def to_float(value: object) -> float | None:
    """A logged value or CSV cell as a float; None for blanks and non-numbers."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _to_int(value: object) -> int | None:
    number = to_float(value)
    return int(number) if number is not None and math.isfinite(number) else None


@dataclass
class MetricStats:
    """Running statistics of one metric."""

    last: float
    count: int = 0
    nan_count: int = 0
    min: float | None = None
    max: float | None = None
    step: int | None = None
    epoch: int | None = None
    min_step: int | None = None
    max_step: int | None = None

    def update(self, value: float, step: int | None, epoch: int | None) -> None:
        self.last, self.step, self.epoch = value, step, epoch
        self.count += 1
        if math.isnan(value):
            self.nan_count += 1
            return
        # Strict comparisons keep the first step at which an extreme was reached.
        if self.min is None or value < self.min:
            self.min, self.min_step = value, step
        if self.max is None or value > self.max:
            self.max, self.max_step = value, step

    def to_json(self) -> dict[str, Any]:
        return {
            "last": encode_value(self.last),
            "min": None if self.min is None else encode_value(self.min),
            "max": None if self.max is None else encode_value(self.max),
            "count": self.count,
            "nan_count": self.nan_count,
            "step": self.step,
            "epoch": self.epoch,
            "min_step": self.min_step,
            "max_step": self.max_step,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MetricStats:
        return cls(
            last=decode_value(doc["last"]),
            count=int(doc["count"]),
            nan_count=int(doc["nan_count"]),
            min=None if doc["min"] is None else decode_value(doc["min"]),
            max=None if doc["max"] is None else decode_value(doc["max"]),
            step=doc["step"],
            epoch=doc["epoch"],
            min_step=doc["min_step"],
            max_step=doc["max_step"],
        )


class Summary:
    """Statistics of every metric of a run, fed one metrics row at a time."""

    def __init__(self, metrics: dict[str, MetricStats] | None = None, csv_rows: int = 0) -> None:
        self.metrics: dict[str, MetricStats] = metrics or {}
        self.csv_rows = csv_rows

    def add_row(self, row: Mapping[str, object]) -> None:
        """Account for one row of ``metrics.csv`` (logged values or CSV text cells)."""
        step, epoch = _to_int(row.get("step")), _to_int(row.get("epoch"))
        for name, raw in row.items():
            if name in COORDINATES:
                continue
            value = to_float(raw)
            if value is None:
                continue
            stats = self.metrics.get(name)
            if stats is None:
                stats = self.metrics[name] = MetricStats(last=value)
            stats.update(value, step, epoch)
        self.csv_rows += 1

    def last_values(self) -> dict[str, float | str]:
        """The last value of every metric, JSON-encoded."""
        return {name: encode_value(s.last) for name, s in self.metrics.items()}

    def to_json(self, run_id: str) -> dict[str, Any]:
        return {
            "schema_version": SUMMARY_VERSION,
            "run_id": run_id,
            "updated_at": now_iso(),
            "csv_rows": self.csv_rows,
            "metrics": {name: s.to_json() for name, s in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Summary:
        metrics = {name: MetricStats.from_json(s) for name, s in doc["metrics"].items()}
        return cls(metrics, csv_rows=int(doc["csv_rows"]))


def encode_summary(summary: Summary, run_id: str) -> bytes:
    """The bytes of ``summary.json``."""
    return (json.dumps(summary.to_json(run_id), indent=1, allow_nan=False) + "\n").encode()


def read_summary(path: Path) -> tuple[Summary, dict[str, Any]]:
    """Read and validate ``summary.json``; return the statistics and the raw document.

    Raises:
        FileNotFoundError: if the file does not exist.
        CorruptRunError: if it is not valid JSON or does not follow the schema.
    """
    doc = parse_json(read_regular(path), path)
    json_schemas.check(doc, "summary", str(path))
    return Summary.from_json(doc), doc
