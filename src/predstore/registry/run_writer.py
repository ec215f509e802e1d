"""The writing side of a run directory: what a logger does, without Lightning.

:class:`RunWriter` owns ``metrics.csv``, ``summary.json``, ``sidecar.json``,
``heartbeat.json`` and ``media/`` of one run directory. Opening a directory
that already holds a run resumes it: same run id and creation time, the next
attempt number, statistics continued from ``summary.json`` plus any rows of
``metrics.csv`` written after it.

Saving is throttled to one every ``save_interval`` seconds unless forced
(checkpoints, the end of a run). An ``OSError`` while saving any of the files
never propagates: it is logged (once per file until that file succeeds
again) and the data stays in memory for the next save.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from argparse import Namespace
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from predstore.errors import CorruptRunError
from predstore.registry._atomic import atomic_write
from predstore.registry._time import iso_from_unix, now_iso
from predstore.registry.rundir.files import (
    HEARTBEAT,
    METRICS,
    SIDECAR,
    SIDECAR_VERSION,
    SUMMARY,
    TERMINAL,
    Status,
)
from predstore.registry.rundir.heartbeat import Heartbeat
from predstore.registry.rundir.media import MediaLog
from predstore.registry.rundir.metrics_csv import MetricsCsv
from predstore.registry.rundir.sidecar import HumanFields, SidecarFile, upsert_store
from predstore.registry.rundir.summary import Summary, encode_summary, encode_value, read_summary

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A sortable, practically unique run id: ``20250131-120000-3fa2c1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def slurm_info(environ: Mapping[str, str]) -> dict[str, str | None] | None:
    """The SLURM job of this process, if any."""
    job = environ.get("SLURM_JOB_ID")
    array_job = environ.get("SLURM_ARRAY_JOB_ID")
    if job is None and array_job is None:
        return None
    return {
        "job_id": job,
        "array_job_id": array_job,
        "array_task_id": environ.get("SLURM_ARRAY_TASK_ID"),
    }


def automatic_tags(environ: Mapping[str, str]) -> list[str]:
    """Tags a run gets without asking: ``sweep:<SLURM_ARRAY_JOB_ID>`` in a SLURM array."""
    array_job = environ.get("SLURM_ARRAY_JOB_ID")
    return [f"sweep:{array_job}"] if array_job else []


def flatten_hparams(params: Mapping[str, Any] | Namespace) -> dict[str, Any]:
    """Flatten nested hyperparameters with dots into JSON scalars and lists of scalars."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = _json_hparam(value)

    visit("", dict(vars(params)) if isinstance(params, Namespace) else dict(params))
    return flat


def _json_hparam(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        items = [_json_hparam(v) for v in value]
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in items):
            return items
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # 0-d numpy/torch
        return _json_hparam(value.item())
    if isinstance(value, Mapping):  # an empty mapping
        return str(dict(value))
    if callable(value):
        return getattr(value, "__qualname__", None) or repr(value)
    return str(value)


class RunWriter:
    """Keeps the files of one run directory up to date.

    Example:
        >>> import tempfile, pathlib
        >>> run = RunWriter(pathlib.Path(tempfile.mkdtemp()), tags=["demo"], heartbeat_interval=60)
        >>> run.open()
        >>> run.log_metrics({"loss": 0.5}, step=0)
        >>> run.finalize("completed")
        >>> sorted(p.name for p in run.run_dir.iterdir())
        ['heartbeat.json', 'metrics.csv', 'sidecar.json', 'summary.json']
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        run_id: str | None = None,
        display_name: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        notes: str = "",
        heartbeat_interval: float = 30.0,
        save_interval: float = 5.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.save_interval = save_interval
        self._environ = dict(os.environ if environ is None else environ)
        self._requested_id = run_id
        human = HumanFields(display_name, notes, [*tags, *automatic_tags(self._environ)])
        self._sidecar = SidecarFile(self.run_dir / SIDECAR, human)
        self._csv = MetricsCsv(self.run_dir / METRICS)
        self._media = MediaLog(self.run_dir)
        self._heartbeat = Heartbeat(
            self.run_dir / HEARTBEAT, heartbeat_interval, status=self._heartbeat_status
        )
        self._summary = Summary()
        self._rows: list[dict[str, Any]] = []
        self._job: dict[str, Any] = {}
        self._failing: dict[str, str] = {}
        self._last_save = -math.inf
        self._last_step: int | None = None
        self._last_log_at: float | None = None
        self._summary_dirty = False
        self._opened = False

    # -- lifecycle -----------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return str(self._job["run_id"])

    @property
    def status(self) -> Status:
        status: Status = self._job["status"]
        return status

    @property
    def attempt(self) -> int:
        return int(self._job["attempt"])

    @property
    def summary(self) -> Summary:
        return self._summary

    def open(self) -> None:
        """Create or resume the run directory, mark the run running and start the heartbeat."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        previous = self._sidecar.load()
        self._job = self._resumed_job(previous) if previous else self._new_job()
        self._load_statistics()
        self._opened = True
        self._start_attempt()
        self.save(force=True)
        if previous:
            log.info("resuming run %s in %s (attempt %d)", self.run_id, self.run_dir, self.attempt)

    def _new_job(self) -> dict[str, Any]:
        return {
            "schema_version": SIDECAR_VERSION,
            "run_id": self._requested_id or new_run_id(),
            "created_at": now_iso(),
            "attempt": 0,
            "hparams": {},
            "best_checkpoint": None,
            "stores": [],
        }

    def _resumed_job(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        job = self._new_job()
        # Carry over only well-typed values: the file may have been edited by hand.
        expected = {
            "run_id": str,
            "created_at": str,
            "attempt": int,
            "hparams": dict,
            "best_checkpoint": dict,
            "stores": list,
        }
        for key, kind in expected.items():
            if isinstance(previous.get(key), kind):
                job[key] = previous[key]
        job["attempt"] = max(job["attempt"], 1)  # it did start at least once
        if self._requested_id and self._requested_id != job["run_id"]:
            log.warning(
                "%s already holds run %s; resuming it and ignoring run_id=%r",
                self.run_dir,
                job["run_id"],
                self._requested_id,
            )
        return job

    def _load_statistics(self) -> None:
        try:
            self._summary, _ = read_summary(self.run_dir / SUMMARY)
        except FileNotFoundError:
            self._summary = Summary()
        except CorruptRunError as exc:
            log.warning("%s; rebuilding the statistics from %s", exc, METRICS)
            self._summary = Summary()
        replay = self._csv.open(skip=self._summary.csv_rows)
        if self._csv.rows < self._summary.csv_rows:
            log.warning(
                "%s holds %d rows but %s accounts for %d; keeping the statistics",
                METRICS,
                self._csv.rows,
                SUMMARY,
                self._summary.csv_rows,
            )
            self._summary.csv_rows = self._csv.rows
        for row in replay:
            self._summary.add_row(row)
        self._summary_dirty = bool(replay)

    def _start_attempt(self) -> None:
        self._job.update(
            status="running",
            started_at=now_iso(),
            ended_at=None,
            error=None,
            attempt=self._job["attempt"] + 1,
            host=socket.gethostname(),
            pid=os.getpid(),
            slurm=slurm_info(self._environ),
            heartbeat_interval=float(self._heartbeat.interval),
        )
        self._heartbeat.start()

    def _reopen(self) -> None:
        """Back to running when a finished run logs again (a later fit, validate, test)."""
        if self._job.get("status") in TERMINAL:
            self._job.update(status="running", ended_at=None, error=None)
            self._heartbeat.start()

    def finalize(self, status: Status, error: str | None = None) -> None:
        """Record the final status, save everything and stop the heartbeat."""
        self._job.update(status=status, ended_at=now_iso(), error=error)
        self.save(force=True)
        self._heartbeat.stop()

    # -- logging ---------------------------------------------------------------------

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Queue one row of metrics for ``metrics.csv``."""
        self._reopen()
        self._rows.append({"step": step, **metrics})
        self._last_step = step
        self._last_log_at = time.time()

    def log_hparams(self, params: Mapping[str, Any] | Namespace) -> None:
        """Merge hyperparameters (flattened with dots) into the sidecar."""
        self._reopen()
        self._job["hparams"] = {**self._job.get("hparams", {}), **flatten_hparams(params)}

    def log_image(
        self, key: str, image: Any, *, step: int | None = None, caption: str | None = None
    ) -> None:
        """Queue an image for ``media/`` (see :mod:`predstore.registry.rundir.media`)."""
        self._media.add(key, image, step=self._last_step if step is None else step, caption=caption)
        if self._job.get("status") in TERMINAL:  # no later save will come to write it
            self.guard_io("media", self._media.flush)

    def set_best_checkpoint(self, path: str, monitor: str | None, score: float | None) -> None:
        """Record the best checkpoint so far."""
        self._job["best_checkpoint"] = {
            "path": path,
            "monitor": monitor,
            "score": None if score is None else encode_value(float(score)),
        }

    def register_store(self, path: str, *, rows: int, committed_at: str, write_id: str) -> None:
        """Record a committed prediction store and persist the sidecar at once."""
        entry = {"path": path, "rows": rows, "committed_at": committed_at, "write_id": write_id}
        upsert_store(self._job.setdefault("stores", []), entry)
        self.guard_io(SIDECAR, self._write_sidecar)

    # -- saving ----------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        """Rows logged but not yet in ``metrics.csv``."""
        return len(self._rows)

    @property
    def pending_images(self) -> int:
        return self._media.pending

    def save(self, force: bool = False) -> bool:
        """Write what changed; returns False when throttled by ``save_interval``."""
        if not self._opened:
            return False
        now = time.monotonic()
        if not force and now - self._last_save < self.save_interval:
            return False
        self._last_save = now
        self.guard_io(METRICS, self._flush_rows)
        self.guard_io("media", self._media.flush)
        if self._summary_dirty:
            self.guard_io(SUMMARY, self._write_summary)
        self.guard_io(SIDECAR, self._write_sidecar)
        return True

    def _flush_rows(self) -> None:
        if not self._rows:
            return
        self._csv.append(self._rows)
        # The summary follows the CSV only once the rows are on disk.
        for row in self._rows:
            self._summary.add_row(row)
        self._rows = []
        self._summary_dirty = True

    def _write_summary(self) -> None:
        atomic_write(self.run_dir / SUMMARY, encode_summary(self._summary, self.run_id))
        self._summary_dirty = False

    def _write_sidecar(self) -> None:
        job = {
            **self._job,
            "run_dir": str(self.run_dir.resolve()),
            "updated_at": now_iso(),
            "last_metrics": self._summary.last_values(),
        }
        self._sidecar.write(job)

    def guard_io(self, what: str, action: Callable[[], None]) -> None:
        """Run ``action``; log an ``OSError`` naming ``what`` instead of raising it."""
        try:
            action()
        except OSError as exc:
            # Compare by kind, not text: the text names a fresh temporary file each time.
            kind = f"{type(exc).__name__}: {exc.strerror or exc}"
            if self._failing.get(what) != kind:
                log.warning("could not write %s in %s (will retry): %s", what, self.run_dir, exc)
            self._failing[what] = kind
        else:
            if self._failing.pop(what, None) is not None:
                log.info("wrote %s in %s again", what, self.run_dir)

    @property
    def failing(self) -> dict[str, str]:
        """Files whose last write failed, with the error."""
        return dict(self._failing)

    def _heartbeat_status(self) -> dict[str, Any]:
        last_log = self._last_log_at
        return {
            "step": self._last_step,
            "last_log_at": None if last_log is None else iso_from_unix(last_log),
            "interval": self._heartbeat.interval,
        }
