"""The scanner: walks a root for run directories and brings the SQLite cache up to date.

Incremental by default: a run directory whose watched files (sidecar,
summary, heartbeat, media index) have the same modification time, size and
inode as at the previous scan is not read again. ``full=True`` drops the
cache content and reads everything. Run directories that disappeared are
removed from the cache. Problems (unreadable or missing files) are recorded
and reported, never raised.

The walk does not follow symbolic links, skips hidden directories, does not
descend into a run directory (its ``checkpoints/`` and ``media/`` are not
runs), skips prediction stores and Zarr hierarchies (directories holding
``manifest.json``, ``zarr.json`` or ``.zgroup``) and stops at ``max_depth``
levels below the root.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predstore.errors import RegistryError
from predstore.registry.index import sqlite_cache
from predstore.registry.index.records import Problem, RunRecord, is_run_dir, read_run_dir, signature
from predstore.registry.rundir.files import HEARTBEAT, SIDECAR, SUMMARY
from predstore.registry.rundir.summary import MetricStats

DEFAULT_MAX_DEPTH = 8
_NOT_RUNS = frozenset({"manifest.json", "zarr.json", ".zgroup"})
_PER_RUN_TABLES = ("entries", "runs", "tags", "summary", "hparams", "stores", "problems")


@dataclass(frozen=True)
class ScanReport:
    """What a scan did."""

    root: Path
    cache: Path
    runs: int  # runs in the index after the scan
    read: int  # run directories read in this scan
    unchanged: int  # run directories skipped because nothing changed
    removed: int  # run directories gone since the previous scan
    problems: tuple[Problem, ...]  # every problem currently known, not only new ones
    seconds: float
    full: bool


def scan(
    root: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    full: bool = False,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> ScanReport:
    """Index the run directories under ``root`` into the cache.

    Args:
        root: directory to walk.
        cache: cache file; default ``ROOT/.predstore-registry.sqlite``.
        full: rebuild the index from scratch instead of reading only what changed.
        max_depth: how many directory levels below ``root`` to look at.

    Raises:
        RegistryError: if ``root`` is not a directory or the cache stays locked
            by another scan for longer than a minute.
    """
    started = time.monotonic()
    root_path = Path(root).resolve()
    if not root_path.is_dir():
        raise RegistryError(f"registry root {root_path} is not a directory")
    cache_path = (
        Path(cache).resolve() if cache is not None else sqlite_cache.default_cache_path(root_path)
    )
    conn = sqlite_cache.open_for_writing(cache_path)
    try:
        counts = _scan_locked(conn, root_path, full, max_depth)
        problems = sqlite_cache.known_problems(conn)
        total = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        conn.close()
    return ScanReport(
        root=root_path,
        cache=cache_path,
        runs=total,
        problems=problems,
        seconds=time.monotonic() - started,
        full=full,
        **counts,
    )


def _scan_locked(
    conn: sqlite3.Connection, root: Path, full: bool, max_depth: int
) -> dict[str, int]:
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise RegistryError(f"the registry cache is busy (another scan?): {exc}") from exc
    try:
        meta = sqlite_cache.read_meta(conn)
        if full or meta.get("root") != str(root):
            sqlite_cache.clear(conn)
        known = dict(conn.execute("SELECT run_dir, signature FROM entries").fetchall())
        conn.execute("DELETE FROM problems WHERE file = ''")  # walk problems are redone
        counts = {"read": 0, "unchanged": 0, "removed": 0}
        seen: set[str] = set()
        for run_dir in _walk(conn, root, max_depth):
            key = str(run_dir)
            seen.add(key)
            sig = signature(run_dir)
            if known.get(key) == sig:
                counts["unchanged"] += 1
                continue
            record, problems = read_run_dir(run_dir)
            _replace(conn, key, sig, record, problems)
            counts["read"] += 1
        for gone in known.keys() - seen:
            _delete(conn, gone)
            counts["removed"] += 1
        _set_meta(conn, root)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return counts


def _walk(conn: sqlite3.Connection, root: Path, max_depth: int) -> Iterator[Path]:
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        directory, depth = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            _add_problem(conn, Problem(str(directory), "", f"cannot list: {exc}", fatal=False))
            continue
        names = {e.name for e in entries}
        if is_run_dir(names):
            yield directory
            continue
        if names & _NOT_RUNS or depth >= max_depth:
            continue
        subdirs = [
            Path(e.path)
            for e in entries
            if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
        ]
        stack.extend((d, depth + 1) for d in sorted(subdirs, reverse=True))


def _delete(conn: sqlite3.Connection, run_dir: str) -> None:
    for table in _PER_RUN_TABLES:
        conn.execute(f"DELETE FROM {table} WHERE run_dir = ?", (run_dir,))  # constant names


def _replace(
    conn: sqlite3.Connection,
    run_dir: str,
    sig: str,
    record: RunRecord | None,
    problems: list[Problem],
) -> None:
    _delete(conn, run_dir)
    conn.execute(
        "INSERT INTO entries (run_dir, signature, indexed) VALUES (?, ?, ?)",
        (run_dir, sig, record is not None),
    )
    if record is not None and not _try_insert(conn, record, problems):
        conn.execute("UPDATE entries SET indexed = 0 WHERE run_dir = ?", (run_dir,))
    for problem in problems:
        _add_problem(conn, problem)


def _try_insert(conn: sqlite3.Connection, record: RunRecord, problems: list[Problem]) -> bool:
    """Index the run; if a value does not fit SQLite (an integer beyond 64 bits, say), index it
    without its summary and heartbeat, and failing that not at all, reporting why."""
    bare = RunRecord(record.run_dir, record.sidecar, media_count=record.media_count)
    step = record.heartbeat.step if record.heartbeat is not None else None
    extras = HEARTBEAT if step is not None and not -(2**63) <= step < 2**63 else SUMMARY
    for attempt, file in ((record, extras), (bare, SIDECAR)):
        conn.execute("SAVEPOINT run")
        try:
            _insert_run(conn, attempt)
        except (OverflowError, sqlite3.Error, TypeError, ValueError) as exc:
            conn.execute("ROLLBACK TO run")
            conn.execute("RELEASE run")
            problems.append(
                Problem(
                    record.run_dir,
                    file,
                    f"cannot be indexed ({exc}): a value is out of range, such as an "
                    "integer beyond 64 bits",
                    fatal=attempt is bare,
                )
            )
            continue
        conn.execute("RELEASE run")
        return True
    return False


def _add_problem(conn: sqlite3.Connection, problem: Problem) -> None:
    conn.execute(
        "INSERT INTO problems (run_dir, file, message, fatal) VALUES (?, ?, ?, ?)",
        (problem.run_dir, problem.file, problem.message, problem.fatal),
    )


def _insert_run(conn: sqlite3.Connection, record: RunRecord) -> None:
    sidecar, key = record.sidecar, record.run_dir
    best = sidecar.get("best_checkpoint") or {}
    steps = [s.step for s in record.summary.metrics.values() if s.step is not None]
    step = record.heartbeat.step if record.heartbeat and record.heartbeat.step is not None else None
    conn.execute(
        "INSERT INTO runs (run_dir, run_id, display_name, status, created_at, started_at, updated_at, "
        "ended_at, last_seen, heartbeat_interval, attempt, host, notes, best_checkpoint, error, "
        "step, media_count, tags, sidecar) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            sidecar["run_id"],
            sidecar.get("display_name"),
            sidecar["status"],
            sidecar.get("created_at"),
            sidecar.get("started_at"),
            sidecar.get("updated_at"),
            sidecar.get("ended_at"),
            record.last_seen,
            sidecar.get("heartbeat_interval"),
            sidecar.get("attempt"),
            sidecar.get("host"),
            sidecar.get("notes", ""),
            best.get("path"),
            sidecar.get("error"),
            step if step is not None else (max(steps) if steps else None),
            record.media_count,
            json.dumps(sidecar.get("tags", [])),
            json.dumps(sidecar),
        ),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO tags (run_dir, tag) VALUES (?, ?)",
        [(key, tag) for tag in sidecar.get("tags", [])],
    )
    conn.executemany(
        "INSERT INTO summary (run_dir, metric, last, min, max, count, nan_count, step, epoch, "
        "min_step, max_step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_summary_row(key, name, s) for name, s in record.summary.metrics.items()],
    )
    conn.executemany(
        "INSERT INTO hparams (run_dir, key, value, num) VALUES (?, ?, ?, ?)",
        [(key, name, *_hparam_cells(value)) for name, value in sidecar.get("hparams", {}).items()],
    )
    conn.executemany(
        "INSERT OR REPLACE INTO stores (run_dir, path, rows, committed_at, write_id) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (key, s["path"], s["rows"], s["committed_at"], s["write_id"])
            for s in sidecar.get("stores", [])
        ],
    )


def _summary_row(run_dir: str, metric: str, s: MetricStats) -> tuple[Any, ...]:
    return (
        run_dir,
        metric,
        _real(s.last),
        _real(s.min),
        _real(s.max),
        s.count,
        s.nan_count,
        s.step,
        s.epoch,
        s.min_step,
        s.max_step,
    )


def _real(value: float | None) -> float | None:
    # SQLite stores NaN as NULL anyway; say so explicitly. Infinities are kept.
    return None if value is None or math.isnan(value) else value


def _hparam_cells(value: Any) -> tuple[str | None, float | None]:
    """(text, number) of a hyperparameter: text as the user wrote strings, JSON otherwise."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    number = (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    )
    return json.dumps(value), number


def _set_meta(conn: sqlite3.Connection, root: Path) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        [("root", str(root)), ("scanned_at", repr(time.time()))],
    )
