"""A CSVLogger that keeps a registry-ready run directory: metrics, sidecar, summary, heartbeat, media."""

from __future__ import annotations

import math
import operator
import os
import sys
from argparse import Namespace
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from predstore.errors import ConfigError
from predstore.lightning.private_api import (
    ResumableExperimentWriter,
    add_prefix,
    convert_params,
)
from predstore.registry.run_writer import RunWriter
from predstore.registry.rundir.files import Status


class _RunExperiment(ResumableExperimentWriter):
    """The ``experiment`` of a RegistryLogger: Lightning's writer API over a RunWriter."""

    def __init__(self, log_dir: str, run: RunWriter) -> None:
        self.run = run
        super().__init__(log_dir=log_dir)

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        values = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics_dict.items()}
        self.run.log_metrics(values, step=0 if step is None else step)

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.run.log_hparams(params)
        # hparams.yaml, as CSVLogger writes it, for tools that read it.
        self.run.guard_io("hparams.yaml", lambda: super(_RunExperiment, self).log_hparams(params))

    def save(self) -> None:
        self.run.save()


class RegistryLogger(CSVLogger):
    """Log a run into a self-describing directory that ``predstore registry`` indexes.

    Example::

        import lightning.pytorch as pl

        from predstore import RegistryLogger

        logger = RegistryLogger("runs", name="resnet", version="lr-0.1", tags=["baseline"])
        trainer = pl.Trainer(logger=logger, max_epochs=1)

    The run directory is ``save_dir/name/version`` as for ``CSVLogger``. It holds
    ``metrics.csv`` (append-only), ``sidecar.json``, ``summary.json``,
    ``heartbeat.json``, ``hparams.yaml`` and ``media/`` with ``media.jsonl``; see
    ``docs/registry.md``. Give a fixed ``version`` (for example the SLURM job id)
    so that a preempted job resumed from its checkpoint continues the same run:
    earlier metrics rows, creation time and statistics are kept.

    The run's status becomes ``completed`` when a trainer function ends normally,
    ``failed`` when it raises, and ``interrupted`` on ``KeyboardInterrupt`` or
    SIGTERM. I/O errors while writing never stop training; they are logged and
    retried at the next save.

    Args:
        save_dir: root directory of the runs.
        name: experiment sub-directory (``None`` or ``""`` for none).
        version: run sub-directory; ``None`` picks the next ``version_N``.
        prefix: prefix of every metric name.
        flush_logs_every_n_steps: also force a save every this many steps.
        run_id: id of a new run (default: ``<UTC time>-<random hex>``); a
            resumed run keeps the id it has.
        display_name: a human-friendly name (default: ``name``); people may edit
            it in the sidecar.
        tags: tags of a new run; a SLURM array job adds ``sweep:<array job id>``.
        notes: free text of a new run.
        heartbeat_interval: seconds between heartbeats (a background thread).
        save_interval: at most one save per this many seconds, except forced
            saves at checkpoints, every ``flush_logs_every_n_steps`` steps and at
            the end; 0 saves at every logging step.
    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
        *,
        run_id: str | None = None,
        display_name: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str = "",
        heartbeat_interval: float = 30.0,
        save_interval: float = 5.0,
    ) -> None:
        super().__init__(
            save_dir=save_dir,
            name=name,
            version=version,
            prefix=prefix,
            flush_logs_every_n_steps=flush_logs_every_n_steps,
        )
        self._run_options: dict[str, Any] = {
            "run_id": _optional_text(run_id, "run_id"),
            # The experiment name is what a person calls the run until they name it.
            "display_name": _optional_text(display_name, "display_name") or name or None,
            "tags": _tags(tags),
            "notes": _text(notes, "notes"),
            "heartbeat_interval": _seconds(heartbeat_interval, "heartbeat_interval", 0.0, False),
            "save_interval": _seconds(save_interval, "save_interval", 0.0, True),
        }
        if not isinstance(flush_logs_every_n_steps, int) or flush_logs_every_n_steps < 1:
            raise ConfigError(
                "RegistryLogger flush_logs_every_n_steps must be a positive integer; "
                f"got {flush_logs_every_n_steps!r}"
            )
        self._run: RunWriter | None = None
        self._run_experiment: _RunExperiment | None = None

    # -- the run -----------------------------------------------------------------

    @property
    @rank_zero_experiment
    def experiment(self) -> _RunExperiment:
        """The run's writer; creating it opens (or resumes) the run directory."""
        if self._run_experiment is None:
            run = RunWriter(Path(self.log_dir), **self._run_options)
            experiment = _RunExperiment(log_dir=self.log_dir, run=run)
            run.open()
            self._experiment = self._run_experiment = experiment
            self._run = run
        return self._run_experiment

    @property
    def run(self) -> RunWriter | None:
        """The :class:`RunWriter` once the run directory is open (rank zero only)."""
        return self._run

    @property
    def run_id(self) -> str | None:
        """The run id once the run directory is open."""
        return None if self._run is None else self._run.run_id

    @property
    def run_dir(self) -> Path:
        """The run directory, ``save_dir/name/version``."""
        return Path(self.log_dir)

    def _open_run(self) -> RunWriter:
        _ = self.experiment
        assert self._run is not None
        return self._run

    # -- Logger API --------------------------------------------------------------

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        run = self._open_run()
        metrics = add_prefix(dict(metrics), self._prefix, self.LOGGER_JOIN_CHAR)
        if step is None:  # as CSVLogger does: the row number
            step = run.pending_rows + run.summary.csv_rows
        self.experiment.log_metrics(dict(metrics), step)
        if (step + 1) % self._flush_logs_every_n_steps == 0:
            run.save(force=True)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None) -> None:
        self._open_run()
        self.experiment.log_hparams(convert_params(params))

    @rank_zero_only
    def save(self) -> None:
        if self._run is not None:
            self._run.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._run is None:
            return  # nothing was opened in this process
        if status == "success":
            self._run.finalize("completed")
        elif status == "failed":
            final, error = _failure_status()
            self._run.finalize(final, error)
        else:
            # "finished" comes from Lightning's SLURM requeue signal: the job goes
            # on until SIGTERM, so only flush.
            self._run.save(force=True)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        run = self._open_run()
        best = getattr(checkpoint_callback, "best_model_path", "")
        if best:
            score = checkpoint_callback.best_model_score
            value = None if score is None else float(score)
            run.set_best_checkpoint(_location(best), checkpoint_callback.monitor, value)
        # What the checkpoint covers should be on disk before training goes on.
        run.save(force=True)

    # -- predstore additions ------------------------------------------------------

    @rank_zero_only
    def log_image(
        self,
        key: str,
        images: Any,
        step: int | None = None,
        caption: str | Sequence[str] | None = None,
    ) -> None:
        """Log one image or a list of images under ``key`` into ``media/``.

        An image is a numpy array, a torch tensor, a PIL image or a file path
        (see ``docs/registry.md`` for the accepted layouts). Files are written
        at the next save.

        Raises:
            ConfigError: if an image has an unsupported type, shape or range,
                or captions do not match the images one to one.
        """
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        captions = _captions(caption, len(batch))
        run = self._open_run()
        for image, text in zip(batch, captions, strict=True):
            run.log_image(key, image, step=step, caption=text)

    @rank_zero_only
    def register_store(
        self, path: str | os.PathLike[str], *, rows: int, committed_at: str, write_id: str
    ) -> None:
        """Record a committed prediction store in the sidecar (called by PredictionWriter).

        A local path is recorded absolute, so that the registry finds the
        store from any directory; a URL (``s3://...``) is recorded as given.

        A later commit of the same path replaces its entry. The sidecar is
        written at once.

        Raises:
            ConfigError: if ``rows`` is not a non-negative integer or a text
                argument is empty.
        """
        try:
            count = operator.index(rows)  # ints and integer numpy scalars
        except TypeError:
            count = -1
        if isinstance(rows, bool) or count < 0:
            raise ConfigError(f"register_store rows must be a non-negative integer; got {rows!r}")
        location = _location(path)
        for arg, value in (
            ("path", location),
            ("committed_at", committed_at),
            ("write_id", write_id),
        ):
            _text(value, arg, empty=False)
        self._open_run().register_store(
            location, rows=count, committed_at=committed_at, write_id=write_id
        )


def _location(path: str | os.PathLike[str]) -> str:
    """An absolute local path, or a URL as given: what stays true from any working directory."""
    text = os.fspath(path)
    return text if "://" in text else os.path.abspath(text)


def _failure_status() -> tuple[Status, str | None]:
    # Lightning calls finalize("failed") inside its except block, so the
    # exception being handled tells an interruption from a failure.
    exc = sys.exc_info()[1]
    if exc is None:
        return "failed", None
    error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    # SIGTERM surfaces as Lightning's SIGTERMException, a SystemExit.
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted", error
    return "failed", error


def _captions(caption: str | Sequence[str] | None, n: int) -> list[str | None]:
    if caption is None:
        return [None] * n
    if isinstance(caption, str):
        return [caption] * n
    texts = list(caption)
    if len(texts) != n or not all(isinstance(t, str) for t in texts):
        raise ConfigError(f"log_image got {n} images but captions {texts!r}; give one string each")
    return [str(t) for t in texts]


def _text(value: object, arg: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        kind = "a string" if empty else "a non-empty string"
        raise ConfigError(f"RegistryLogger {arg} must be {kind}; got {value!r}")
    return value


def _optional_text(value: object, arg: str) -> str | None:
    return None if value is None else _text(value, arg, empty=False)


def _tags(tags: Sequence[str] | None) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        raise ConfigError(f"RegistryLogger tags must be a list of strings; got the string {tags!r}")
    items = list(tags)
    if not all(isinstance(t, str) and t for t in items):
        raise ConfigError(f"RegistryLogger tags must be non-empty strings; got {items!r}")
    return list(dict.fromkeys(items))


def _seconds(value: object, arg: str, low: float, inclusive: bool) -> float:
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    ok = (
        number is not None
        and math.isfinite(number)
        and (number >= low if inclusive else number > low)
    )
    if not ok:
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise ConfigError(
            f"RegistryLogger {arg} must be a number of seconds {bound}; got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]
