"""The SQLite cache: WAL for the scanner, read-only for readers, disposable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from predstore.errors import RegistryError
from predstore.registry.index import sqlite_cache


def test_writer_uses_wal_and_readers_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = sqlite_cache.open_for_writing(path)
    assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    writer.execute("INSERT INTO meta (key, value) VALUES ('root', '/r')")
    writer.close()
    reader = sqlite_cache.open_for_reading(path)
    assert sqlite_cache.read_meta(reader)["root"] == "/r"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    reader.close()


def test_a_missing_cache_asks_for_a_scan(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="run `predstore registry scan ROOT` first"):
        sqlite_cache.open_for_reading(tmp_path / "absent.sqlite")


def test_a_damaged_cache_is_rebuilt_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match="not a registry cache"):
        sqlite_cache.open_for_reading(path)
    writer = sqlite_cache.open_for_writing(path)
    assert sqlite_cache.read_meta(writer)["version"] == str(sqlite_cache.CACHE_VERSION)
    writer.close()


def test_an_other_version_is_dropped_by_the_writer_and_refused_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    writer = sqlite_cache.open_for_writing(path)
    writer.execute(
        "INSERT INTO runs (run_dir, run_id, status, notes, media_count, tags, sidecar) "
        "VALUES ('d', 'r', 'running', '', 0, '[]', '{}')"
    )
    writer.execute("UPDATE meta SET value = '999' WHERE key = 'version'")
    writer.close()
    with pytest.raises(RegistryError, match="version 999"):
        sqlite_cache.open_for_reading(path)
    writer = sqlite_cache.open_for_writing(path)
    assert writer.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    writer.close()
    sqlite_cache.open_for_reading(path).close()


def test_default_location() -> None:
    assert sqlite_cache.default_cache_path("/data/runs") == Path(
        "/data/runs/.predstore-registry.sqlite"
    )
