"""What the runs page shows: the registry's runs, their metric curves and their logged media.

Filters and sorting are the registry's own (``predstore registry ls --where``);
files are read only from run directories the registry's cache lists, and a
media file only when the run's ``media.jsonl`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from predstore.errors import QueryError
from predstore.registry import Registry, read_media_index
from predstore.registry.rundir.files import METRICS

#: Columns of the runs table before the hyperparameters and metrics.
SHOWN = ("run_id", "display_name", "status", "created_at", "step", "tags")
#: Points of one metric curve sent to the browser, at most (evenly thinned).
MAX_POINTS = 2000


@dataclass(frozen=True)
class RunsTable:
    columns: list[str]
    rows: list[dict[str, Any]]
    running: int  # runs alive: the page keeps polling while there are any


def runs_table(
    registry: Registry, where: list[str], tags: list[str], sort: str, descending: bool
) -> RunsTable:
    """Every run matching the filters, with its hyperparameters and last metric values."""
    frame = registry.table(where=where or None, tags=tags or None)
    if sort:
        if sort not in frame.columns:
            raise QueryError(f"cannot sort by {sort!r}: the columns are {', '.join(frame.columns)}")
        frame = frame.sort(sort, descending=descending, nulls_last=True)
    fields = [c for c in frame.columns if c.startswith("hparams.")]
    fields += [c for c in frame.columns if c.startswith("summary.") and ":" not in c]
    shown = [c for c in SHOWN if c in frame.columns] + fields
    rows = frame.select(*shown, "run_dir").to_dicts()
    running = int((frame["status"] == "running").sum()) if frame.height else 0
    return RunsTable(shown, rows, running)


def run_dir(registry: Registry, run: str) -> Path:
    """The directory of ``run`` (a run id or a unique prefix), as the registry's cache knows it."""
    return Path(registry.show(run).info["run_dir"])


def stores_of(registry: Registry, run: str) -> list[dict[str, Any]]:
    return registry.show(run).stores.to_dicts()


def metric_curves(registry: Registry, runs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per metric, one curve (run id, steps, values) for each selected run that logged it."""
    curves: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        detail = registry.show(run)
        frame = _metrics(Path(detail.info["run_dir"]))
        if frame is None or "step" not in frame.columns:
            continue
        for metric in frame.columns:
            if metric in ("step", "epoch"):
                continue
            points = frame.select("step", metric).drop_nulls()
            points = points.filter(pl.col(metric).is_not_nan())
            if points.height > MAX_POINTS:
                points = points.gather_every(-(-points.height // MAX_POINTS))
            curves.setdefault(metric, []).append(
                {
                    "run": detail.info["run_id"],
                    "x": points["step"].to_list(),
                    "y": points[metric].to_list(),
                }
            )
    return dict(sorted(curves.items()))


def _metrics(directory: Path) -> pl.DataFrame | None:
    path = directory / METRICS
    if not path.is_file():
        return None
    try:
        frame = pl.read_csv(path, infer_schema_length=None, truncate_ragged_lines=True)
    except (pl.exceptions.PolarsError, OSError):
        return None
    numbers = [c for c, t in frame.schema.items() if t.is_numeric()]
    return frame.select(pl.col(numbers).cast(pl.Float64))


def media(registry: Registry, run: str) -> dict[str, list[dict[str, Any]]]:
    """The run's logged images by key, each list in step order."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for entry in read_media_index(run_dir(registry, run)):
        if isinstance(entry.get("key"), str) and isinstance(entry.get("path"), str):
            by_key.setdefault(entry["key"], []).append(entry)
    for entries in by_key.values():
        entries.sort(key=lambda e: (e.get("step") is None, e.get("step") or 0))
    return dict(sorted(by_key.items()))


def media_file(registry: Registry, run: str, path: str) -> Path:
    """The file of one media entry, if the run's media index names it; else a ``QueryError``."""
    directory = run_dir(registry, run)
    named = {e.get("path") for e in read_media_index(directory)}
    if path not in named:
        raise QueryError(f"run {run} logged no image {path!r}")
    resolved = (directory / path).resolve()
    if not resolved.is_relative_to(directory.resolve()):
        raise QueryError(f"{path!r} lies outside the run directory")
    return resolved
