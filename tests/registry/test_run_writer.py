"""RunWriter: the run directory files, without Lightning."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from predstore.registry.run_writer import RunWriter, flatten_hparams, new_run_id


def _sidecar(run_dir: Path) -> dict:
    return json.loads((run_dir / "sidecar.json").read_text())


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _csv(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _writer(run_dir: Path, **kwargs: object) -> RunWriter:
    options: dict[str, object] = {"heartbeat_interval": 60.0, "save_interval": 0.0, "environ": {}}
    options.update(kwargs)
    return RunWriter(run_dir, **options)  # type: ignore[arg-type]


def test_a_new_run(tmp_path: Path) -> None:
    run = _writer(tmp_path / "r", run_id="my-run", tags=["a"], notes="n", display_name="d")
    run.open()
    sidecar = _sidecar(run.run_dir)
    assert (sidecar["run_id"], sidecar["status"], sidecar["attempt"]) == ("my-run", "running", 1)
    assert (sidecar["tags"], sidecar["notes"], sidecar["display_name"]) == (["a"], "n", "d")
    assert sidecar["run_dir"] == str((tmp_path / "r").resolve())
    run.log_hparams({"model": {"depth": 3, "act": "relu"}, "lr": 0.1})
    run.log_metrics({"loss": 1.0, "epoch": 0}, step=0)
    run.log_metrics({"loss": 0.5, "epoch": 0}, step=1)
    run.finalize("completed")
    sidecar = _sidecar(run.run_dir)
    assert sidecar["status"] == "completed"
    assert sidecar["ended_at"] is not None
    assert sidecar["hparams"] == {"model.depth": 3, "model.act": "relu", "lr": 0.1}
    assert sidecar["last_metrics"] == {"loss": 0.5}
    assert _summary(run.run_dir)["metrics"]["loss"]["count"] == 2
    assert [r["loss"] for r in _csv(run.run_dir)] == ["1.0", "0.5"]


def test_resume_continues_ids_times_rows_and_statistics(tmp_path: Path) -> None:
    first = _writer(tmp_path / "r", tags=["first"])
    first.open()
    for step, loss in enumerate([3.0, 1.0, 2.0]):
        first.log_metrics({"loss": loss}, step=step)
    first.save(force=True)
    created = _sidecar(first.run_dir)["created_at"]
    # The process dies here: no finalize.
    second = _writer(tmp_path / "r", tags=["ignored on resume"], run_id="ignored")
    second.open()
    assert second.run_id == first.run_id
    assert second.attempt == 2
    assert second.summary.metrics["loss"].count == 3
    second.log_metrics({"loss": 0.5, "acc": 0.9}, step=3)
    second.finalize("completed")
    sidecar = _sidecar(second.run_dir)
    assert (sidecar["created_at"], sidecar["tags"]) == (created, ["first"])
    stats = _summary(second.run_dir)["metrics"]["loss"]
    assert (stats["count"], stats["min"], stats["max"], stats["last"]) == (4, 0.5, 3.0, 0.5)
    assert [r["loss"] for r in _csv(second.run_dir)] == ["3.0", "1.0", "2.0", "0.5"]


def test_rows_written_after_the_last_summary_are_replayed(tmp_path: Path) -> None:
    run = _writer(tmp_path / "r")
    run.open()
    run.log_metrics({"loss": 2.0}, step=0)
    run.save(force=True)
    # A crash between the CSV append and the summary write leaves the CSV ahead.
    with open(run.run_dir / "metrics.csv", "a") as f:
        f.write("1,1.0\n")
    resumed = _writer(tmp_path / "r")
    resumed.open()
    stats = resumed.summary.metrics["loss"]
    assert (stats.count, stats.min, stats.last) == (2, 1.0, 1.0)
    assert resumed.summary.csv_rows == 2
    resumed.finalize("completed")


def test_io_errors_are_logged_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = _writer(tmp_path / "r")
    run.open()
    blocker = run.run_dir / "summary.json"
    blocker.unlink(missing_ok=True)  # not written until there is something to say
    blocker.mkdir()  # summary.json cannot be replaced now
    run.log_metrics({"loss": 1.0}, step=0)
    with caplog.at_level(logging.WARNING):
        run.save(force=True)
        run.log_metrics({"loss": 0.5}, step=1)
        run.save(force=True)
    assert list(run.failing) == ["summary.json"]
    assert caplog.text.count("could not write summary.json") == 1  # logged once
    blocker.rmdir()
    run.finalize("completed")
    assert run.failing == {}
    assert _summary(run.run_dir)["metrics"]["loss"]["count"] == 2


def test_saves_are_throttled_unless_forced(tmp_path: Path) -> None:
    run = _writer(tmp_path / "r", save_interval=3600.0)
    run.open()
    run.log_metrics({"loss": 1.0}, step=0)
    assert run.save() is False
    assert run.pending_rows == 1
    assert run.save(force=True) is True
    assert run.pending_rows == 0
    run.finalize("completed")


def test_slurm_array_jobs_are_tagged_and_recorded(tmp_path: Path) -> None:
    environ = {"SLURM_JOB_ID": "101", "SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "1"}
    run = _writer(tmp_path / "r", tags=["mine"], environ=environ)
    run.open()
    sidecar = _sidecar(run.run_dir)
    assert sidecar["tags"] == ["mine", "sweep:100"]
    assert sidecar["slurm"] == {"job_id": "101", "array_job_id": "100", "array_task_id": "1"}
    run.finalize("completed")


def test_logging_after_the_end_reopens_and_images_after_the_end_are_written(
    tmp_path: Path,
) -> None:
    run = _writer(tmp_path / "r")
    run.open()
    run.finalize("completed")
    run.log_image("late", np.zeros((2, 2)))
    assert run.pending_images == 0
    assert (run.run_dir / "media.jsonl").exists()
    run.log_metrics({"test_acc": 0.5}, step=0)
    assert run.status == "running"
    run.finalize("completed")
    assert _sidecar(run.run_dir)["status"] == "completed"


def test_register_store_writes_at_once(tmp_path: Path) -> None:
    run = _writer(tmp_path / "r", save_interval=3600.0)
    run.open()
    run.register_store("/s", rows=3, committed_at="2024-01-01T00:00:00+00:00", write_id="w1")
    assert _sidecar(run.run_dir)["stores"] == [
        {"path": "/s", "rows": 3, "committed_at": "2024-01-01T00:00:00+00:00", "write_id": "w1"}
    ]
    run.finalize("completed")


def test_hyperparameters_are_flattened_to_json() -> None:
    flat = flatten_hparams(
        {"a": {"b": 1, "c": {"d": [1, 2]}}, "f": float("inf"), "g": print, "h": {}, "i": (1, {})}
    )
    assert flat == {"a.b": 1, "a.c.d": [1, 2], "f": "inf", "g": "print", "h": "{}", "i": [1, "{}"]}
    json.dumps(flat, allow_nan=False)


def test_run_ids_sort_by_time() -> None:
    first, second = new_run_id(), new_run_id()
    assert len(first) == len("20250131-120000-3fa2c1")
    assert first[:15] <= second[:15]
