"""Reading one run directory the way the scanner does."""

from __future__ import annotations

import json
from pathlib import Path

from predstore.registry.index.records import is_run_dir, read_run_dir, signature
from registry_support import RunSpec, write_run


def test_a_good_run_directory(tmp_path: Path) -> None:
    spec = RunSpec(rel="a", run_id="r-a", metrics={"loss": [0.5, 0.25]}, heartbeat_age=30.0)
    run_dir = write_run(tmp_path, spec)
    record, problems = read_run_dir(run_dir)
    assert problems == []
    assert record is not None
    assert record.sidecar["run_id"] == "r-a"
    assert record.summary.metrics["loss"].count == 2
    assert record.heartbeat is not None and record.heartbeat.step == 1
    assert record.last_seen is not None


def test_problems_are_reported_not_raised(tmp_path: Path, damaged_run_files: None) -> None:
    run_dir = write_run(tmp_path, RunSpec(rel="b", run_id="r-b", metrics={"loss": [1.0]}))
    (run_dir / "summary.json").write_text("{")
    record, problems = read_run_dir(run_dir)
    assert record is not None
    assert [(p.file, p.fatal) for p in problems] == [("summary.json", False)]
    (run_dir / "sidecar.json").rename(run_dir / "sidecar.json.1-ab.tmp")
    record, problems = read_run_dir(run_dir)
    assert record is None
    assert problems[0].fatal
    assert "only the unfinished temporary file sidecar.json.1-ab.tmp" in problems[0].message


def test_a_running_run_without_summary_yet_is_fine(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path, RunSpec(rel="c", run_id="r-c", status="running"))
    (run_dir / "summary.json").unlink()
    record, problems = read_run_dir(run_dir)
    assert record is not None
    assert problems == []


def test_markers_and_signatures(tmp_path: Path) -> None:
    assert is_run_dir(["sidecar.json", "metrics.csv"])
    assert is_run_dir(["heartbeat.json"])
    assert is_run_dir(["sidecar.json.9-aa.tmp"])
    assert not is_run_dir(["metrics.csv", "hparams.yaml"])  # a plain CSVLogger directory
    run_dir = write_run(tmp_path, RunSpec(rel="d", run_id="r-d"))
    before = signature(run_dir)
    assert signature(run_dir) == before
    doc = json.loads((run_dir / "sidecar.json").read_text())
    doc["notes"] = "edited by hand, a little longer"
    (run_dir / "sidecar.json").write_text(json.dumps(doc))
    assert signature(run_dir) != before
