from __future__ import annotations

import json
from pathlib import Path

import pytest

from predstore.read.verify import verify
from support import write_ranks


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    write_ranks(
        path, [list(range(0, 90, 2)), list(range(1, 90, 2))], shard_bytes=16 * 1200, batch_size=10
    )
    return path


def test_a_sound_store_verifies(path: Path) -> None:
    report = verify(path, deep=True)
    assert report.ok, report.problems
    assert report.generation == 1 and report.rows == 90
    assert report.files_checked >= 8


def _shard(path: Path) -> Path:
    return next(
        p for p in sorted(path.rglob("*")) if p.is_file() and "c" in p.relative_to(path).parts
    )


def test_a_missing_shard_is_reported(path: Path) -> None:
    shard = _shard(path)
    shard.unlink()
    report = verify(path)
    assert not report.ok
    assert any("is missing" in p and shard.name in p for p in report.problems)


def test_a_resized_file_is_reported(path: Path) -> None:
    part = next(path.rglob("*.parquet"))
    part.write_bytes(part.read_bytes() + b"junk")
    report = verify(path)
    assert any(f"{part.name} has" in p and "the manifest says" in p for p in report.problems)


def test_a_damaged_shard_fails_the_deep_check(path: Path) -> None:
    shard = _shard(path)
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    data[-20] ^= 0xFF  # the shard index is checksummed
    shard.write_bytes(bytes(data))
    assert verify(path).ok  # sizes still match
    report = verify(path, deep=True)
    assert any("cannot be decoded" in p for p in report.problems)


@pytest.mark.corrupts_manifests
def test_coverage_figures_must_hold(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["coverage"]["0"]["unique"] = 91
    manifest["rows"] = 91
    (path / "manifest.json").write_text(json.dumps(manifest))
    report = verify(path)
    assert any("coverage does not match" in p for p in report.problems)
    assert any("says 91 rows" in p for p in report.problems)


@pytest.mark.corrupts_manifests
def test_an_unlisted_shard_with_committed_rows_is_reported(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    files = manifest["arrays"][0]["files"]
    files.pop(sorted(files)[0])
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert any("holds committed rows but is not listed" in p for p in verify(path).problems)


def test_an_uncommitted_store_is_not_ok(tmp_path: Path) -> None:
    report = verify(tmp_path / "nothing")
    assert not report.ok and "does not exist" in report.problems[0]


def test_unfinished_writes_are_reported_with_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1, 2], [3, 4]], finalize=False)
    report = verify(path)
    assert not report.ok
    (unfinished,) = report.unfinished
    assert (
        unfinished.rows == 5
        and unfinished.recoverable
        and unfinished.ranks == {0: "closed", 1: "closed"}
    )
