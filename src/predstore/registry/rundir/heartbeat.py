"""``heartbeat.json``: proof of life of a running job.

A background thread rewrites the file every ``interval`` seconds for as long
as the logger is active, whatever the main thread is doing (a long
validation, a slow checkpoint), so the interval is bounded independently of
the training loop. The content records the writer's clock, host, pid, last
logged step and the time of the last logged metrics, so a job that is alive
but stuck (the heartbeat is fresh, the step does not move) can be told from
one that is progressing. The file is replaced atomically without fsync: a
heartbeat lost in a crash carries no information.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predstore.errors import CorruptRunError
from predstore.registry._atomic import atomic_write
from predstore.registry._time import now_iso, unix_from_iso
from predstore.registry.rundir._read import parse_json, read_regular

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeartbeatInfo:
    """What a heartbeat file says."""

    time: float  # seconds since the epoch
    step: int | None = None
    last_log_at: float | None = None
    pid: int | None = None
    host: str | None = None


def write_heartbeat(path: Path, extra: dict[str, Any]) -> None:
    """Replace the heartbeat file with the current time plus ``extra`` fields."""
    doc = {"time": now_iso(), "host": socket.gethostname(), "pid": os.getpid(), **extra}
    atomic_write(path, (json.dumps(doc) + "\n").encode(), fsync=False)


def read_heartbeat(path: Path) -> HeartbeatInfo | None:
    """The heartbeat in ``path``; None if the file is absent.

    An unreadable file still proves that something wrote it: its modification
    time stands in for the time it records.
    """
    try:
        data = read_regular(path)  # CorruptRunError for a FIFO: reported by the scan
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        doc = parse_json(data, path)
    except CorruptRunError:
        return HeartbeatInfo(time=mtime)
    if not isinstance(doc, dict):
        return HeartbeatInfo(time=mtime)
    step, pid, host = doc.get("step"), doc.get("pid"), doc.get("host")
    return HeartbeatInfo(
        time=unix_from_iso(doc.get("time")) or mtime,
        step=step if isinstance(step, int) else None,
        last_log_at=unix_from_iso(doc.get("last_log_at")),
        pid=pid if isinstance(pid, int) else None,
        host=host if isinstance(host, str) else None,
    )


class Heartbeat:
    """A daemon thread that writes a heartbeat file at a fixed interval.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "heartbeat.json"
        >>> beat = Heartbeat(path, interval=60.0, status=lambda: {"step": 3})
        >>> beat.start()
        >>> read_heartbeat(path).step
        3
        >>> beat.stop()
    """

    def __init__(
        self, path: Path, interval: float, status: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.path = path
        self.interval = interval
        self._status = status or dict
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Write a first heartbeat now, then one every ``interval`` seconds."""
        if self.running:
            return
        self._stop.clear()
        self.beat()
        self._thread = threading.Thread(target=self._run, name="predstore-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last heartbeat."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))
        self._thread = None
        self.beat()

    def beat(self) -> None:
        """Write one heartbeat; an I/O error is logged once and retried at the next beat."""
        try:
            write_heartbeat(self.path, self._status())
        except OSError as exc:
            if not self._failing:
                log.warning("could not write heartbeat %s (will retry): %s", self.path, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("heartbeat %s written again", self.path)
            self._failing = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
