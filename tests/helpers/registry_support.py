"""Helpers for the run-registry tests: generated run directories and schema checks.

Run directories are generated with predstore's own format writers (sidecar,
summary, metrics table, heartbeat), fast enough for hundreds of runs; the
Lightning tests produce real ones with RegistryLogger.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from predstore.registry._time import iso_from_unix
from predstore.registry.run_writer import flatten_hparams
from predstore.registry.rundir.heartbeat import write_heartbeat
from predstore.registry.rundir.metrics_csv import MetricsCsv
from predstore.registry.rundir.sidecar import encode_sidecar
from predstore.registry.rundir.summary import Summary, encode_summary

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


VALIDATORS = {"sidecar": _validator("sidecar"), "summary": _validator("summary")}


def validate_run_files(root: Path, skip: set[str] | frozenset[str] = frozenset()) -> int:
    """Validate every sidecar.json and summary.json below ``root``; return how many.

    Run directories in ``skip`` (damaged on purpose) are left out.
    """
    count = 0
    for name, validator in VALIDATORS.items():
        for path in root.rglob(f"{name}.json"):
            if str(path.parent) in skip or not path.is_file():
                continue
            document = json.loads(path.read_text())
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
            assert not errors, f"{path} violates its JSON Schema: " + "; ".join(
                f"{e.json_path}: {e.message}" for e in errors[:5]
            )
            count += 1
    return count


@dataclass
class RunSpec:
    """What a generated run directory holds, for tests to derive expectations from."""

    rel: str
    run_id: str
    status: str = "completed"
    tags: list[str] = field(default_factory=list)
    hparams: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    display_name: str | None = None
    notes: str = ""
    created_at: float = 0.0  # seconds since the epoch
    heartbeat_age: float | None = 5.0  # seconds before now; None: no heartbeat file
    heartbeat_interval: float = 30.0
    stores: list[dict[str, Any]] = field(default_factory=list)


def write_run(root: Path, spec: RunSpec) -> Path:
    """Create the run directory ``root/spec.rel`` with the files RegistryLogger writes."""
    run_dir = root / spec.rel
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _rows(spec.metrics)
    MetricsCsv(run_dir / "metrics.csv").append(rows)
    summary = Summary()
    for row in rows:
        summary.add_row(row)
    (run_dir / "summary.json").write_bytes(encode_summary(summary, spec.run_id))
    now = time.time()
    seen = now - (spec.heartbeat_age or 0.0)
    sidecar = {
        "schema_version": 1,
        "run_id": spec.run_id,
        "display_name": spec.display_name,
        "status": spec.status,
        "tags": spec.tags,
        "notes": spec.notes,
        "run_dir": str(run_dir),
        "created_at": iso_from_unix(spec.created_at or now - 3600),
        "started_at": iso_from_unix(spec.created_at or now - 3600),
        "updated_at": iso_from_unix(seen),
        "ended_at": None if spec.status == "running" else iso_from_unix(seen),
        "attempt": 1,
        "host": "node-1",
        "pid": 4242,
        "slurm": None,
        "heartbeat_interval": spec.heartbeat_interval,
        "error": "RuntimeError: boom" if spec.status == "failed" else None,
        "best_checkpoint": None,
        "last_metrics": summary.last_values(),
        "hparams": flatten_hparams(spec.hparams),
        "stores": spec.stores,
    }
    (run_dir / "sidecar.json").write_bytes(encode_sidecar(sidecar))
    if spec.heartbeat_age is not None:
        write_heartbeat(run_dir / "heartbeat.json", {"step": len(rows) - 1})
        doc = json.loads((run_dir / "heartbeat.json").read_text())
        doc["time"] = iso_from_unix(seen)
        (run_dir / "heartbeat.json").write_text(json.dumps(doc))
    return run_dir


def _rows(metrics: dict[str, list[float]]) -> list[dict[str, Any]]:
    length = max((len(v) for v in metrics.values()), default=0)
    rows = []
    for step in range(length):
        row: dict[str, Any] = {"step": step, "epoch": step // 4}
        row.update({k: v[step] for k, v in metrics.items() if step < len(v)})
        rows.append(row)
    return rows


def spec_for(i: int) -> RunSpec:
    """The i-th run of a generated registry: a deterministic mix of everything."""
    statuses = ["completed", "completed", "failed", "interrupted", "running"]
    status = statuses[i % len(statuses)]
    tags = [f"group:{'ab'[i % 2]}"]
    if i % 4 == 0:
        tags.append("sweep:7")
    if i % 7 == 0:
        tags.append("ab")  # a tag that contains the tag "a" as a substring
    if i % 11 == 0:
        tags.append("x%_y")  # LIKE wildcards must match literally
    metrics: dict[str, list[float]] = {"train_loss": [1.0 / (i + s + 1) for s in range(6)]}
    if i % 10 != 0:  # every tenth run never logs val_loss
        metrics["val_loss"] = [((i * 37) % 101) / 100 + 1 / (s + 1) for s in range(4)]
        metrics["val_acc"] = [((i * 53) % 97) / 100 + s / 100 for s in range(4)]
    if i % 25 == 3:
        metrics["val_loss"][-1] = math.nan  # a diverged last value
    return RunSpec(
        rel=f"exp{i % 3}/run_{i:03d}",
        run_id=f"run-{i:03d}",
        status=status,
        tags=tags,
        hparams={
            "lr": [0.1, 0.01, 0.001][i % 3],
            "optimizer": "adam" if i % 2 else "sgd",
            "model": {"depth": 2 + i % 4, "act": "relu"},
            "use_ema": i % 3 == 0,
        },
        metrics=metrics,
        display_name=f"run number {i}" if i % 5 == 0 else None,
        # Running runs: most fresh, every fourth one silent for an hour.
        heartbeat_age=3600.0 if status == "running" and i % 4 == 1 else 5.0,
        created_at=1_700_000_000 + i * 60,
    )


@dataclass
class GeneratedRegistry:
    root: Path
    specs: list[RunSpec]  # the runs that must be indexed
    fatal: dict[str, str]  # run dir -> which file keeps it out of the index
    warnings: dict[str, str]  # run dir -> which file is reported although the run is indexed
    stray_temp: Path  # a good run with a leftover temporary file beside its sidecar

    def spec(self, run_id: str) -> RunSpec:
        return next(s for s in self.specs if s.run_id == run_id)

    def run_dir(self, spec: RunSpec) -> str:
        return str(self.root / spec.rel)

    def metrics_of(self, spec: RunSpec) -> dict[str, list[float]]:
        """The metrics the registry knows of: none when the summary is damaged."""
        return {} if self.run_dir(spec) in self.warnings else spec.metrics

    @property
    def damaged(self) -> set[str]:
        return set(self.fatal) | set(self.warnings)


def make_registry(root: Path, total: int = 200) -> GeneratedRegistry:
    """``total`` run directories under ``root``: most good, twelve damaged in eight ways."""
    damaged = _damage_plan()
    specs, fatal, warnings = [], {}, {}
    for i in range(total):
        spec = spec_for(i)
        run_dir = write_run(root, spec)
        how = damaged.get(i)
        if how is None:
            specs.append(spec)
            continue
        file, is_fatal = how(run_dir)
        (fatal if is_fatal else warnings)[str(run_dir)] = file
        if not is_fatal:
            specs.append(spec)
    stray = root / specs[-1].rel
    (stray / "sidecar.json.1234-0badf00d.tmp").write_text('{"half": ')
    return GeneratedRegistry(root, specs, fatal, warnings, stray)


def _bad_json_sidecar(run_dir: Path) -> tuple[str, bool]:
    text = (run_dir / "sidecar.json").read_text()
    (run_dir / "sidecar.json").write_text(text[: len(text) // 2])
    return "sidecar.json", True


def _missing_sidecar(run_dir: Path) -> tuple[str, bool]:
    (run_dir / "sidecar.json").unlink()
    return "sidecar.json", True


def _only_temp_sidecar(run_dir: Path) -> tuple[str, bool]:
    (run_dir / "sidecar.json").rename(run_dir / "sidecar.json.999-deadbeef.tmp")
    return "sidecar.json", True


def _schema_invalid_sidecar(run_dir: Path) -> tuple[str, bool]:
    doc = json.loads((run_dir / "sidecar.json").read_text())
    doc["status"] = "exploded"
    (run_dir / "sidecar.json").write_text(json.dumps(doc))
    return "sidecar.json", True


def _bad_json_summary(run_dir: Path) -> tuple[str, bool]:
    (run_dir / "summary.json").write_text("{not json")
    return "summary.json", False


def _missing_summary(run_dir: Path) -> tuple[str, bool]:
    (run_dir / "summary.json").unlink()
    return "summary.json", False


def _damage_plan() -> dict[int, Any]:
    # Indices chosen among completed runs (i % 5 in {0, 1}) where it matters.
    return {
        6: _bad_json_sidecar,
        17: _bad_json_sidecar,
        28: _bad_json_sidecar,
        39: _missing_sidecar,
        52: _missing_sidecar,
        63: _only_temp_sidecar,
        74: _only_temp_sidecar,
        85: _schema_invalid_sidecar,
        96: _bad_json_summary,
        107: _bad_json_summary,
        120: _missing_summary,  # completed: its summary should exist
        131: _missing_summary,  # completed as well
    }
