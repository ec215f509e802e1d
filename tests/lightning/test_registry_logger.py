"""RegistryLogger over real Lightning fits and real subprocesses."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from predstore import registry
from predstore.errors import ConfigError
from predstore.lightning.registry_logger import RegistryLogger
from predstore.registry._time import now_iso
from predstore.registry.rundir.heartbeat import read_heartbeat
from predstore.registry.rundir.media import read_media_index

JOB = Path(__file__).resolve().parents[1] / "helpers" / "jobs" / "registry_job.py"


def _sidecar(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "sidecar.json").read_text())


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _header(run_dir: Path) -> list[str]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return next(csv.reader(f))


def _column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name)]


def _assert_summary_matches_csv(run_dir: Path, metric: str) -> None:
    values = _column(_rows(run_dir), metric)
    stats = _summary(run_dir)["metrics"][metric]
    assert stats["count"] == len(values)
    assert stats["min"] == min(values)
    assert stats["max"] == max(values)
    assert stats["last"] == values[-1]


class ImageModule(pl.LightningModule):
    """Trains, validates and logs images of every accepted kind."""

    def __init__(self, lr: float = 0.05, late_from: int = -1, val_sleep: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)
        self.image_file: Path | None = None

    def _loader(self, seed: int) -> DataLoader:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(32, 4, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)

    def train_dataloader(self) -> DataLoader:
        return self._loader(0)

    def val_dataloader(self) -> DataLoader:
        return self._loader(1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        if 0 <= self.hparams.late_from <= self.global_step:
            self.log("late_metric", float(self.global_step))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        time.sleep(self.hparams.val_sleep)
        x, y = batch
        self.log("val_loss", F.mse_loss(self.net(x), y))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or self.image_file is None:
            return
        logger = next(lg for lg in self.loggers if isinstance(lg, RegistryLogger))
        pixels = np.linspace(0, 1, 3 * 8 * 8).reshape(8, 8, 3)
        logger.log_image("val/numpy", pixels, caption="a gradient")
        logger.log_image("val/torch", [torch.rand(3, 8, 8), torch.rand(1, 8, 8)])
        logger.log_image("val/pil", Image.fromarray((pixels * 255).astype(np.uint8)))
        logger.log_image("val/file", self.image_file)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _trainer(tmp_path: Path, logger: Any, **kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "logger": logger,
        "log_every_n_steps": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(tmp_path),
    }
    options.update(kwargs)
    return pl.Trainer(**options)


def test_a_fit_writes_every_file(tmp_path: Path) -> None:
    logger = RegistryLogger(tmp_path, name="exp", version="v0", tags=["baseline"], notes="first")
    model = ImageModule()
    model.image_file = tmp_path / "photo.png"
    Image.new("RGB", (4, 4), "red").save(model.image_file)
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", mode="min")
    trainer = _trainer(tmp_path, logger, enable_checkpointing=True, callbacks=[best])
    trainer.fit(model)

    run_dir = tmp_path / "exp" / "v0"
    assert logger.run_dir == run_dir
    for name in ("metrics.csv", "sidecar.json", "summary.json", "heartbeat.json", "hparams.yaml"):
        assert (run_dir / name).is_file(), name
    rows = _rows(run_dir)
    assert len(_column(rows, "train_loss")) == trainer.global_step == 8
    assert len(_column(rows, "val_loss")) == 2  # one per epoch
    for metric in ("train_loss", "val_loss"):
        _assert_summary_matches_csv(run_dir, metric)

    sidecar = _sidecar(run_dir)
    assert sidecar["run_id"] == logger.run_id
    assert (sidecar["status"], sidecar["attempt"], sidecar["error"]) == ("completed", 1, None)
    assert (sidecar["tags"], sidecar["notes"]) == (["baseline"], "first")
    assert sidecar["hparams"]["lr"] == 0.05
    summary = _summary(run_dir)["metrics"]
    assert sidecar["last_metrics"] == {name: stats["last"] for name, stats in summary.items()}
    assert sidecar["best_checkpoint"]["path"] == best.best_model_path
    assert sidecar["best_checkpoint"]["monitor"] == "val_loss"
    assert sidecar["best_checkpoint"]["score"] == summary["val_loss"]["min"]

    heartbeat = read_heartbeat(run_dir / "heartbeat.json")
    assert heartbeat is not None and heartbeat.step == 7

    media = read_media_index(run_dir)
    keys = [m["key"] for m in media]
    assert keys.count("val/numpy") == keys.count("val/pil") == keys.count("val/file") == 2
    assert keys.count("val/torch") == 4  # two images per call
    assert {m["step"] for m in media} == {3, 7}  # the last logged step of each epoch
    for entry in media:
        assert (run_dir / entry["path"]).is_file()
    numpy_entry = next(m for m in media if m["key"] == "val/numpy")
    assert numpy_entry["caption"] == "a gradient"
    decoded = np.asarray(Image.open(run_dir / numpy_entry["path"]))
    assert decoded.shape == (8, 8, 3)


def test_a_metric_appearing_mid_run_adds_a_column_and_keeps_rows(tmp_path: Path) -> None:
    class Watch(pl.Callback):
        def __init__(self) -> None:
            self.header_before: list[str] = []
            self.rows_before: list[dict[str, str]] = []

        def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == 3:
                self.header_before = _header(run_dir)
                self.rows_before = _rows(run_dir)

    run_dir = tmp_path / "exp" / "v"
    watch = Watch()
    logger = RegistryLogger(tmp_path, name="exp", version="v", save_interval=0)
    _trainer(tmp_path, logger, max_epochs=1, limit_val_batches=0, callbacks=[watch]).fit(
        ImageModule(late_from=3)
    )
    header = _header(run_dir)
    assert header == [*watch.header_before, "late_metric"]
    rows = _rows(run_dir)
    assert len(watch.rows_before) == 3
    for before, after in zip(watch.rows_before, rows, strict=False):
        assert after == {**before, "late_metric": ""}
    assert _column(rows, "late_metric") == [3.0]
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3]


def test_a_failing_fit_is_marked_failed(tmp_path: Path) -> None:
    class Boom(ImageModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_step == 2:
                raise RuntimeError("loss went to the moon")
            return super().training_step(batch, batch_idx)

    logger = RegistryLogger(tmp_path, version="v")
    with pytest.raises(RuntimeError, match="moon"):
        _trainer(tmp_path, logger).fit(Boom())
    sidecar = _sidecar(logger.run_dir)
    assert sidecar["status"] == "failed"
    assert sidecar["error"] == "RuntimeError: loss went to the moon"
    assert sidecar["ended_at"] is not None
    assert len(_column(_rows(logger.run_dir), "train_loss")) == 2  # rows before the failure


def test_keyboard_interrupt_is_marked_interrupted(tmp_path: Path) -> None:
    class CtrlC(ImageModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_step == 1:
                raise KeyboardInterrupt
            return super().training_step(batch, batch_idx)

    logger = RegistryLogger(tmp_path, version="v")
    previous = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning exits after a graceful shutdown
            _trainer(tmp_path, logger).fit(CtrlC())
    finally:
        signal.signal(signal.SIGINT, previous)  # Lightning ignores further Ctrl+C
    sidecar = _sidecar(logger.run_dir)
    assert sidecar["status"] == "interrupted"
    assert sidecar["error"] == "KeyboardInterrupt"


def test_heartbeat_keeps_beating_during_a_long_validation(tmp_path: Path) -> None:
    class Pulse(pl.Callback):
        def __init__(self) -> None:
            self.beats: list[float] = []

        def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            info = read_heartbeat(logger.run_dir / "heartbeat.json")
            assert info is not None
            self.beats.append(info.time)

    pulse = Pulse()
    logger = RegistryLogger(tmp_path, version="v", heartbeat_interval=0.1)
    trainer = _trainer(
        tmp_path,
        logger,
        max_epochs=1,
        limit_train_batches=1,
        callbacks=[pulse],
        num_sanity_val_steps=0,
    )
    trainer.fit(ImageModule(val_sleep=0.3))  # four validation batches, 1.2 s without logging
    assert len(pulse.beats) == 4
    assert all(b > a for a, b in zip(pulse.beats, pulse.beats[1:], strict=False))


def test_human_edits_during_training_survive(tmp_path: Path) -> None:
    class Editor(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == 2:
                path = logger.run_dir / "sidecar.json"
                doc = json.loads(path.read_text())
                doc.update(notes="diverges at step 2", tags=["look"], display_name="odd one")
                doc["reviewed_by"] = "ana"
                tmp = path.with_name("edit.tmp")
                tmp.write_text(json.dumps(doc))
                os.replace(tmp, path)  # as a careful editor saves

    logger = RegistryLogger(tmp_path, version="v", tags=["job-tag"], save_interval=0)
    _trainer(tmp_path, logger, callbacks=[Editor()]).fit(ImageModule())
    sidecar = _sidecar(logger.run_dir)
    assert sidecar["status"] == "completed"
    assert (sidecar["notes"], sidecar["tags"], sidecar["display_name"]) == (
        "diverges at step 2",
        ["look"],
        "odd one",
    )
    assert sidecar["reviewed_by"] == "ana"


def test_io_errors_never_stop_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Saboteur(pl.Callback):
        """Makes one file at a time unwritable for a few steps, then gives it back."""

        def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            run_dir = logger.run_dir
            step = trainer.global_step
            if step == 1:
                (run_dir / "summary.json").unlink()
                (run_dir / "summary.json").mkdir()
            if step == 3:
                (run_dir / "summary.json").rmdir()
            if step == 4:
                (run_dir / "metrics.csv").rename(run_dir / "aside.csv")
                (run_dir / "metrics.csv").mkdir()
            if step == 6:
                (run_dir / "metrics.csv").rmdir()
                (run_dir / "aside.csv").rename(run_dir / "metrics.csv")

    logger = RegistryLogger(tmp_path, version="v", save_interval=0)
    trainer = _trainer(tmp_path, logger, max_epochs=2, limit_val_batches=0, callbacks=[Saboteur()])
    with caplog.at_level(logging.WARNING, logger="predstore"):
        trainer.fit(ImageModule())
    assert trainer.global_step == 8
    assert "could not write metrics.csv" in caplog.text
    assert "could not write summary.json" in caplog.text
    rows = _rows(logger.run_dir)
    assert [int(r["step"]) for r in rows] == list(range(8))  # every row, once, in order
    _assert_summary_matches_csv(logger.run_dir, "train_loss")
    assert _sidecar(logger.run_dir)["status"] == "completed"


def test_register_store_without_a_trainer(tmp_path: Path) -> None:
    logger = RegistryLogger(tmp_path, version="v")
    logger.register_store("/stores/a", rows=10, committed_at=now_iso(), write_id="w1")
    logger.register_store(
        Path("/stores/b"), rows=np.int64(3), committed_at=now_iso(), write_id="w2"
    )
    logger.register_store("/stores/a", rows=12, committed_at=now_iso(), write_id="w3")
    stores = _sidecar(logger.run_dir)["stores"]  # written at once, before any save
    assert [(s["path"], s["rows"], s["write_id"]) for s in stores] == [
        ("/stores/a", 12, "w3"),
        ("/stores/b", 3, "w2"),
    ]
    logger.finalize("success")
    assert _sidecar(logger.run_dir)["status"] == "completed"
    with pytest.raises(ConfigError, match="non-negative integer"):
        logger.register_store("/stores/c", rows=-1, committed_at=now_iso(), write_id="w4")
    with pytest.raises(ConfigError, match="write_id must be a non-empty string"):
        logger.register_store("/stores/c", rows=1, committed_at=now_iso(), write_id="")


def test_paths_are_recorded_absolute_and_the_name_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    logger = RegistryLogger("runs", name="resnet", version="v")
    best = ModelCheckpoint(dirpath="ckpt", monitor="val_loss", mode="min")
    _trainer(tmp_path, logger, enable_checkpointing=True, callbacks=[best]).fit(ImageModule())
    logger.register_store("preds.pstore", rows=1, committed_at=now_iso(), write_id="w1")
    logger.register_store("s3://bucket/preds.pstore", rows=2, committed_at=now_iso(), write_id="w2")
    sidecar = _sidecar(logger.run_dir)
    assert [s["path"] for s in sidecar["stores"]] == [
        str(tmp_path / "preds.pstore"),
        "s3://bucket/preds.pstore",
    ]
    assert sidecar["best_checkpoint"]["path"] == str(tmp_path / best.best_model_path)
    assert Path(sidecar["best_checkpoint"]["path"]).is_file()
    assert sidecar["display_name"] == "resnet"
    registry.scan(tmp_path / "runs")
    with registry.Registry.open(tmp_path / "runs") as reg:
        assert reg.ls()["display_name"].to_list() == ["resnet"]


def test_register_store_from_a_callback_in_a_fit(tmp_path: Path) -> None:
    class FakeStoreCommit(pl.Callback):
        """Calls loggers the way PredictionWriter does after it commits a store."""

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            for each in trainer.loggers:
                if hasattr(each, "register_store"):
                    each.register_store(
                        str(tmp_path / "preds"), rows=32, committed_at=now_iso(), write_id="w-1"
                    )

    logger = RegistryLogger(tmp_path, version="v")
    plain = CSVLogger(tmp_path / "plain")  # loggers without the method are skipped
    _trainer(tmp_path, [logger, plain], callbacks=[FakeStoreCommit()]).fit(ImageModule())
    sidecar = _sidecar(logger.run_dir)
    assert sidecar["stores"] == [
        {
            "path": str(tmp_path / "preds"),
            "rows": 32,
            "committed_at": sidecar["stores"][0]["committed_at"],
            "write_id": "w-1",
        }
    ]
    assert sidecar["status"] == "completed"


def test_resume_in_the_same_directory_continues_the_run(tmp_path: Path) -> None:
    first_logger = RegistryLogger(tmp_path, version="v")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(
        tmp_path, first_logger, max_epochs=1, enable_checkpointing=True, callbacks=[checkpoint]
    ).fit(ImageModule())
    first = _sidecar(first_logger.run_dir)
    rows_before = _rows(first_logger.run_dir)

    logger = RegistryLogger(tmp_path, version="v", tags=["not applied on resume"])
    _trainer(tmp_path, logger, max_epochs=2).fit(
        ImageModule(), ckpt_path=tmp_path / "ckpt/last.ckpt"
    )
    second = _sidecar(logger.run_dir)
    assert (second["run_id"], second["created_at"]) == (first["run_id"], first["created_at"])
    assert (second["attempt"], second["tags"]) == (2, [])
    rows = _rows(logger.run_dir)
    assert rows[: len(rows_before)] == rows_before
    assert len(_column(rows, "train_loss")) == 8
    _assert_summary_matches_csv(logger.run_dir, "train_loss")


def test_a_slurm_array_job_gets_a_sweep_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    logger = RegistryLogger(tmp_path, version="v", tags=["mine"])
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.finalize("success")
    sidecar = _sidecar(logger.run_dir)
    assert sidecar["tags"] == ["mine", "sweep:4242"]
    assert sidecar["slurm"]["array_task_id"] == "3"


def test_configured_from_yaml_with_lightning_cli(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 1
  log_every_n_steps: 1
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: predstore.RegistryLogger
    init_args:
      save_dir: {tmp_path}/runs
      name: cli
      version: from-yaml
      tags: [yaml, cli]
      notes: configured in YAML
      display_name: yaml run
      heartbeat_interval: 5
model:
  lr: 0.02
"""
    )
    cli = LightningCLI(
        ImageModule, args=["fit", "--config", str(config)], save_config_callback=None
    )
    logger = cli.trainer.logger
    assert isinstance(logger, RegistryLogger)
    run_dir = tmp_path / "runs" / "cli" / "from-yaml"
    sidecar = _sidecar(run_dir)
    assert (sidecar["tags"], sidecar["notes"], sidecar["display_name"]) == (
        ["yaml", "cli"],
        "configured in YAML",
        "yaml run",
    )
    assert sidecar["heartbeat_interval"] == 5.0
    assert sidecar["hparams"]["lr"] == 0.02
    assert sidecar["status"] == "completed"
    assert len(_column(_rows(run_dir), "train_loss")) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tags": "a,b"}, "list of strings"),
        ({"tags": ["ok", ""]}, "non-empty strings"),
        ({"heartbeat_interval": 0}, "heartbeat_interval must be a number of seconds > 0"),
        ({"save_interval": -1}, "save_interval must be a number of seconds >= 0"),
        ({"save_interval": math.inf}, "save_interval"),
        ({"run_id": ""}, "run_id must be a non-empty string"),
        ({"notes": None}, "notes must be a string"),
        ({"flush_logs_every_n_steps": 0}, "positive integer"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RegistryLogger(tmp_path, **kwargs)


def test_bad_images_fail_at_once(tmp_path: Path) -> None:
    logger = RegistryLogger(tmp_path, version="v")
    with pytest.raises(ConfigError, match="2 images but captions"):
        logger.log_image("k", [np.zeros((2, 2)), np.zeros((2, 2))], caption=["only one"])
    with pytest.raises(ConfigError, match="2-D"):
        logger.log_image("k", np.zeros(4))
    logger.finalize("success")


# -- real subprocesses: preemption ---------------------------------------------------


def _start(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(JOB), str(root), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_until(predicate: Any, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the job ended early: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the job did not get there in time")
        time.sleep(0.05)


def _complete_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file, leaving out a last line torn by the kill."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    table = list(csv.reader(lines))
    return table[0], table[1:]


def test_a_run_killed_with_sigkill_and_resumed_keeps_rows_and_statistics(tmp_path: Path) -> None:
    run_dir = tmp_path / "exp" / "job"
    last = run_dir / "checkpoints" / "last.ckpt"
    job = _start(tmp_path, "--max-steps", "100000", "--sleep", "0.03")

    def far_enough() -> bool:
        try:
            return last.exists() and len(_complete_rows(run_dir / "metrics.csv")[1]) >= 8
        except (FileNotFoundError, IndexError):
            return False

    _wait_until(far_enough, job)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    header_before, rows_before = _complete_rows(run_dir / "metrics.csv")
    sidecar_before = _sidecar(run_dir)
    assert sidecar_before["status"] == "running"  # a killed job cannot say anything
    resume_step = torch.load(last, weights_only=False)["global_step"]

    extra = 6
    resumed = _start(
        tmp_path,
        "--max-steps",
        str(resume_step + extra),
        "--ckpt",
        str(last),
        "--late-from",
        str(resume_step + 2),
    )
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()[-3000:]

    header = _header(run_dir)
    assert header == [*header_before, "late"]  # old order kept, the new column at the end
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert rows[: len(rows_before)] == [[*r, ""] for r in rows_before]  # every earlier row
    assert len(rows) == len(rows_before) + extra
    steps_after = [int(r[0]) for r in rows[len(rows_before) :]]
    assert steps_after == list(range(resume_step, resume_step + extra))

    _assert_summary_matches_csv(run_dir, "train_loss")  # continued, not restarted
    assert _summary(run_dir)["metrics"]["train_loss"]["count"] == len(rows)
    assert _summary(run_dir)["metrics"]["late"]["count"] == extra - 2
    sidecar = _sidecar(run_dir)
    assert (sidecar["run_id"], sidecar["created_at"]) == (
        sidecar_before["run_id"],
        sidecar_before["created_at"],
    )
    assert (sidecar["status"], sidecar["attempt"], sidecar["tags"]) == (
        "completed",
        2,
        ["preemptible"],
    )


def test_sigterm_marks_the_run_interrupted(tmp_path: Path) -> None:
    run_dir = tmp_path / "exp" / "job"
    job = _start(tmp_path, "--max-steps", "100000", "--sleep", "0.03")

    def started() -> bool:
        try:
            return len(_complete_rows(run_dir / "metrics.csv")[1]) >= 3
        except (FileNotFoundError, IndexError):
            return False

    _wait_until(started, job)
    job.send_signal(signal.SIGTERM)
    job.communicate(timeout=60)
    sidecar = _sidecar(run_dir)
    assert sidecar["status"] == "interrupted"
    assert sidecar["error"].startswith("SIGTERMException")
    assert sidecar["ended_at"] is not None
