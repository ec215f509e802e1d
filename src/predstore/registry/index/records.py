"""Reading a run directory as the scanner sees it: one record, or the problems that prevent it.

A directory is a run directory when it holds one of ``sidecar.json``,
``summary.json`` or ``heartbeat.json``, or a temporary file of one of them (a
write that never completed). ``sidecar.json`` is the run's identity: without
a readable, schema-valid sidecar the directory is reported and not indexed.
A missing or broken summary, heartbeat or media index is reported but the run
is still indexed with what could be read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predstore.errors import CorruptRunError
from predstore.registry._atomic import is_temp_of
from predstore.registry._time import unix_from_iso
from predstore.registry.rundir.files import (
    HEARTBEAT,
    MARKERS,
    MEDIA_INDEX,
    SIDECAR,
    SUMMARY,
    TERMINAL,
)
from predstore.registry.rundir.heartbeat import HeartbeatInfo, read_heartbeat
from predstore.registry.rundir.media import read_media_index
from predstore.registry.rundir.sidecar import read_sidecar
from predstore.registry.rundir.summary import Summary, read_summary

#: Files whose (mtime, size) decide whether a run must be read again.
WATCHED = (SIDECAR, SUMMARY, HEARTBEAT, MEDIA_INDEX)


@dataclass(frozen=True)
class Problem:
    """Something wrong with a run directory. ``fatal`` problems keep the run out of the index."""

    run_dir: str
    file: str
    message: str
    fatal: bool


@dataclass
class RunRecord:
    """Everything the registry indexes about one run."""

    run_dir: str
    sidecar: dict[str, Any]
    summary: Summary = field(default_factory=Summary)
    heartbeat: HeartbeatInfo | None = None
    media_count: int = 0

    @property
    def last_seen(self) -> float | None:
        """The latest sign of life: the heartbeat or the sidecar's last update."""
        times = [unix_from_iso(self.sidecar.get("updated_at"))]
        if self.heartbeat is not None:
            times.append(self.heartbeat.time)
        known = [t for t in times if t is not None]
        return max(known) if known else None


def is_run_dir(names: Iterable[str]) -> bool:
    """Whether a directory with these entries is a run directory."""
    return any(n in MARKERS or any(is_temp_of(n, m) for m in MARKERS) for n in names)


def signature(run_dir: Path) -> str:
    """A fingerprint of the watched files; it changes whenever one of them does."""
    parts: list[list[int] | None] = []
    for name in WATCHED:
        try:
            st = os.stat(run_dir / name)
        except FileNotFoundError:
            parts.append(None)
        else:
            parts.append([st.st_mtime_ns, st.st_size, st.st_ino])
    return json.dumps(parts)


def read_run_dir(run_dir: Path) -> tuple[RunRecord | None, list[Problem]]:
    """Read one run directory; never raises for bad content, reports it instead."""
    where = str(run_dir)
    try:
        sidecar = read_sidecar(run_dir / SIDECAR)
    except FileNotFoundError:
        temps = _temp_names(run_dir, SIDECAR)
        detail = f" (only the unfinished temporary file {temps[0]})" if temps else ""
        return None, [Problem(where, SIDECAR, f"missing{detail}", fatal=True)]
    except (CorruptRunError, OSError) as exc:
        return None, [Problem(where, SIDECAR, str(exc), fatal=True)]
    record = RunRecord(run_dir=where, sidecar=sidecar)
    problems: list[Problem] = []
    _read_summary_into(record, run_dir, problems)
    try:
        record.heartbeat = read_heartbeat(run_dir / HEARTBEAT)
    except (CorruptRunError, OSError) as exc:
        problems.append(Problem(where, HEARTBEAT, str(exc), fatal=False))
    try:
        record.media_count = len(read_media_index(run_dir))
    except (CorruptRunError, OSError) as exc:
        problems.append(Problem(where, MEDIA_INDEX, str(exc), fatal=False))
    return record, problems


def _read_summary_into(record: RunRecord, run_dir: Path, problems: list[Problem]) -> None:
    try:
        record.summary, _ = read_summary(run_dir / SUMMARY)
    except FileNotFoundError:
        # A run that just started may not have saved yet; a finished one should have.
        if record.sidecar.get("status") in TERMINAL:
            problems.append(Problem(record.run_dir, SUMMARY, "missing", fatal=False))
    except (CorruptRunError, OSError, KeyError, ValueError) as exc:
        problems.append(Problem(record.run_dir, SUMMARY, str(exc), fatal=False))


def _temp_names(run_dir: Path, target: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(run_dir) if is_temp_of(n, target))
    except OSError:
        return []
