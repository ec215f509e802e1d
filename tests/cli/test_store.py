"""The store commands, run as a user runs them: the installed ``predstore`` script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import predstore
from predstore.read.verify import verify
from support import assert_rows, write_ranks

EXE = shutil.which("predstore") or ""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [EXE, *args] if EXE else [sys.executable, "-m", "predstore", *args]
    # Keep PYTHONPATH: the command must run the predstore under test.
    env = {"COLUMNS": "200", "PATH": "", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    write_ranks(path, [list(range(0, 40, 2)), list(range(1, 40, 2))])
    return path


def test_info_shows_keys_coverage_and_provenance(store: Path) -> None:
    result = run("info", str(store))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "40 rows" in out and "generation 1" in out
    for word in (
        "logits",
        "zarr",
        "float32",
        "300",
        "pred",
        "parquet",
        "Coverage",
        "Writes",
        "pyarrow",
        "zarr 3",
    ):
        assert word in out, word
    as_json = json.loads(run("info", str(store), "--json").stdout)
    assert as_json["rows"] == 40 and as_json["format"] == "predstore"


def test_verify_passes_then_fails_on_damage(store: Path) -> None:
    ok = run("verify", str(store), "--deep")
    assert ok.returncode == 0 and "ok" in ok.stdout
    next(store.rglob("*.parquet")).unlink()
    bad = run("verify", str(store))
    assert bad.returncode == 1
    assert "is missing" in bad.stderr and "not ok" in bad.stderr


def test_finalize_commits_unfinished_ranks(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1], [2, 3, 4]], finalize=False)
    before = run("verify", str(path))
    assert (
        before.returncode == 1
        and "unfinished write" in before.stderr
        and "5 committed rows" in before.stderr
    )
    done = run("finalize", str(path))
    assert done.returncode == 0 and "5 rows" in done.stdout
    assert run("verify", str(path)).returncode == 0


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = run("info", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "error: no store at" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_parquet_and_csv(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    assert run("export", str(store), str(out)).returncode == 0
    frame = pl.read_parquet(out)
    assert frame["index"].to_list() == list(range(40)) and "logits" in frame.columns
    csv = tmp_path / "out.csv"
    assert (
        run("export", str(store), str(csv), "--format", "csv", "--arrays", "skip").returncode == 0
    )
    assert "logits" not in pl.read_csv(csv).columns
    assert run("export", str(store), str(csv), "--format", "xml").returncode == 2


def test_upgrade_and_the_recovery_flags(tmp_path: Path) -> None:
    old = tmp_path / "old.pstore"
    shutil.copytree(Path(__file__).parents[1] / "data" / "format-0.1.pstore", old)
    done = run("upgrade", str(old))
    assert done.returncode == 0 and "format version 2, generation 3" in done.stdout
    assert run("finalize", str(old)).stdout.startswith("nothing to finalize")
    assert run("vacuum", str(old), "--retention", "0", "--discard-unfinished").returncode == 0
    assert run("finalize", str(old), "--allow-shrink").returncode == 0
    assert predstore.open(old).manifest.format_version == 2


def test_compact_rewrites_many_parts_into_few_in_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [list(range(0, 40, 2)), list(range(1, 40, 2))], batch_size=4)
    write_ranks(path, [list(range(40, 50))], mode="append", batch_size=3)
    for writer_rows in ([50, 51], [52]):
        write_ranks(path, [writer_rows], mode="append")
    before = predstore.open(path)
    assert len(before.manifest.parts) >= 4
    done = run("compact", str(path))
    assert done.returncode == 0, done.stderr
    after = predstore.open(path)
    assert len(after.manifest.parts) == 1
    assert after.manifest.generation == before.manifest.generation + 1
    assert_rows(after, range(53))
    assert_rows(before, range(53))  # a reader of the old generation keeps reading it
    assert verify(path, deep=True).ok
