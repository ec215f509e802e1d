"""The SQLite cache of a run registry: schema, and opening it for the scanner or for readers.

The cache is derived data: every fact in it comes from the run directories,
so deleting it is harmless (the next scan rebuilds it). It lives by default
at ``ROOT/.predstore-registry.sqlite``.

- The scanner is the only writer. It opens the cache in WAL mode and holds
  SQLite's write lock for a whole scan (``BEGIN IMMEDIATE``), so two scans
  serialise and readers keep seeing the previous complete scan until the new
  one commits.
- Readers open it read-only (``mode=ro``); when the directory does not let
  them create SQLite's shared-memory file, they fall back to
  ``immutable=1``.
- A cache written by another cache version, or one SQLite cannot read, is
  dropped and rebuilt by the scanner; a reader asks for a new scan.

WAL needs all processes on one host: on a network filesystem, put the cache
on a local disk with ``--cache``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from predstore.errors import RegistryError
from predstore.registry.index.records import Problem

CACHE_NAME = ".predstore-registry.sqlite"
CACHE_VERSION = 1
BUSY_TIMEOUT_SECONDS = 60.0

_TABLES = ("meta", "entries", "runs", "tags", "summary", "hparams", "stores", "problems")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    run_dir TEXT PRIMARY KEY, signature TEXT NOT NULL, indexed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_dir TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    display_name TEXT,
    status TEXT NOT NULL,
    created_at TEXT,
    started_at TEXT,
    updated_at TEXT,
    ended_at TEXT,
    last_seen REAL,
    heartbeat_interval REAL,
    attempt INTEGER,
    host TEXT,
    notes TEXT NOT NULL,
    best_checkpoint TEXT,
    error TEXT,
    step INTEGER,
    media_count INTEGER NOT NULL,
    tags TEXT NOT NULL,
    sidecar TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_run_id ON runs (run_id);
CREATE TABLE IF NOT EXISTS tags (
    run_dir TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (run_dir, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_tag ON tags (tag);
CREATE TABLE IF NOT EXISTS summary (
    run_dir TEXT NOT NULL, metric TEXT NOT NULL,
    last REAL, min REAL, max REAL, count INTEGER, nan_count INTEGER,
    step INTEGER, epoch INTEGER, min_step INTEGER, max_step INTEGER,
    PRIMARY KEY (run_dir, metric)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS summary_metric ON summary (metric);
CREATE TABLE IF NOT EXISTS hparams (
    run_dir TEXT NOT NULL, key TEXT NOT NULL, value TEXT, num REAL,
    PRIMARY KEY (run_dir, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hparams_key ON hparams (key);
CREATE TABLE IF NOT EXISTS stores (
    run_dir TEXT NOT NULL, path TEXT NOT NULL, rows INTEGER, committed_at TEXT, write_id TEXT,
    PRIMARY KEY (run_dir, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS problems (
    run_dir TEXT NOT NULL, file TEXT NOT NULL, message TEXT NOT NULL, fatal INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS problems_run_dir ON problems (run_dir);
"""


def default_cache_path(root: str | os.PathLike[str]) -> Path:
    """Where the cache of the registry rooted at ``root`` lives unless told otherwise."""
    return Path(root) / CACHE_NAME


def open_for_writing(path: Path) -> sqlite3.Connection:
    """Open (creating or rebuilding as needed) the cache for the scanner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = _connect_writer(path)
        if _version(conn) not in (None, CACHE_VERSION):
            _drop_all(conn)
    except sqlite3.DatabaseError:
        # Not a database, or a damaged one: it is only a cache.
        _delete_cache_files(path)
        conn = _connect_writer(path)
    conn.executescript(SCHEMA)
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)", (str(CACHE_VERSION),)
    )
    return conn


def _connect_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def open_for_reading(path: Path) -> sqlite3.Connection:
    """Open the cache read-only for queries.

    Raises:
        RegistryError: if there is no cache at ``path`` or it needs a new scan.
    """
    if not path.is_file():
        raise RegistryError(
            f"no registry cache at {path}; run `predstore registry scan ROOT` first "
            "(or pass --cache for a cache elsewhere)"
        )
    uri = path.resolve().as_uri()
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        version = _version(conn)
    except sqlite3.OperationalError:
        # No right to create the -shm file next to the cache: read it as a snapshot.
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
        version = _version(conn)
    except sqlite3.DatabaseError as exc:
        raise RegistryError(f"{path} is not a registry cache ({exc}); run a scan") from exc
    if version != CACHE_VERSION:
        conn.close()
        raise RegistryError(
            f"the registry cache {path} has version {version}, this predstore reads "
            f"{CACHE_VERSION}; run `predstore registry scan ROOT --full`"
        )
    return conn


def _version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    return int(row[0]) if row else None


def _drop_all(conn: sqlite3.Connection) -> None:
    for table in _TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")  # names from the constant above


def clear(conn: sqlite3.Connection) -> None:
    """Remove every indexed run (a full rescan), keeping the schema."""
    for table in _TABLES:
        if table != "meta":
            conn.execute(f"DELETE FROM {table}")  # names from the constant above


def _delete_cache_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The cache's meta table: version, root, scanned_at."""
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def known_problems(conn: sqlite3.Connection) -> tuple[Problem, ...]:
    """Every problem the cache knows of, plus run ids shared by several directories."""
    rows = conn.execute(
        "SELECT run_dir, file, message, fatal FROM problems ORDER BY run_dir, file"
    ).fetchall()
    problems = [Problem(d, f, m, bool(x)) for d, f, m, x in rows]
    # Copied run directories share a run id; derived at query time so it never goes stale.
    duplicates = conn.execute(
        "SELECT run_id, run_dir FROM runs WHERE run_id IN "
        "(SELECT run_id FROM runs GROUP BY run_id HAVING COUNT(*) > 1) ORDER BY run_id, run_dir"
    ).fetchall()
    message = "run id {} is used by more than one run directory"
    problems += [Problem(d, "sidecar.json", message.format(r), False) for r, d in duplicates]
    return tuple(problems)
