"""``predstore registry``: the real app through typer's runner, and the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from predstore.cli.app import app
from registry_support import GeneratedRegistry

WIDE = {"COLUMNS": "250"}  # rich wraps tables at the terminal width


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def scanned(fresh_generated: GeneratedRegistry) -> GeneratedRegistry:
    code, out, _ = _run("registry", "scan", str(fresh_generated.root))
    assert code == 0, out
    return fresh_generated


def test_scan_reports_counts_and_problems(fresh_generated: GeneratedRegistry) -> None:
    gen = fresh_generated
    code, out, err = _run("registry", "scan", str(gen.root))
    assert code == 0
    assert f"{len(gen.specs)} runs indexed (200 read, 0 unchanged, 0 removed)" in out
    problems = len(gen.fatal) + len(gen.warnings)
    assert f"{problems} problems" in err
    assert out.count("\n") == 1 + 1 + problems + 1  # summary, header, one line each, blank
    for run_dir in gen.fatal:
        assert Path(run_dir).name in out
    code, out, _ = _run("registry", "scan", str(gen.root))
    assert "(0 read, 200 unchanged, 0 removed)" in out
    code, out, _ = _run("registry", "scan", str(gen.root), "--full")
    assert "(200 read, 0 unchanged, 0 removed)" in out


def test_ls_filters_sorts_and_limits(scanned: GeneratedRegistry) -> None:
    root = str(scanned.root)
    code, out, err = _run("registry", "ls", "--root", root)
    assert code == 0
    assert f"{len(scanned.specs)} runs" in err  # piped: the title on stderr, the rows on stdout
    header, *rows = out.splitlines()[:-1]
    assert header.split("\t")[:3] == ["run_id", "name", "status"]
    assert len(rows) == len(scanned.specs)
    assert all(r.count("\t") == header.count("\t") for r in rows)  # no value wraps
    code, out, _ = _run(
        "registry",
        "ls",
        "-r",
        root,
        "--tag",
        "sweep:7",
        "--status",
        "completed",
        "--sort",
        "summary.val_loss:min",
        "--limit",
        "3",
        "-c",
        "hparams.lr",
    )
    assert code == 0, out
    expected = sorted(
        (min(scanned.metrics_of(s)["val_loss"]), scanned.run_dir(s), s.run_id)
        for s in scanned.specs
        if "sweep:7" in s.tags and s.status == "completed" and scanned.metrics_of(s).get("val_loss")
    )[:3]
    lines = [line for line in out.splitlines() if "run-" in line]
    assert [line.split("\t")[0] for line in lines] == [run_id for *_, run_id in expected]
    assert "summary.val_loss:min" in out and "hparams.lr" in out
    code, out, err = _run("registry", "ls", "-r", root, "--alive")
    running = [s for s in scanned.specs if s.status == "running" and (s.heartbeat_age or 0) < 300]
    assert f"{len(running)} runs" in err
    code, out, err = _run(
        "registry",
        "ls",
        "-r",
        root,
        "--where",
        "hparams.optimizer=adam",
        "--where",
        "hparams.lr<0.05",
    )
    adam = [s for s in scanned.specs if s.hparams["optimizer"] == "adam" and s.hparams["lr"] < 0.05]
    assert f"{len(adam)} runs" in err


def test_best_show_and_export(scanned: GeneratedRegistry, tmp_path: Path) -> None:
    root = str(scanned.root)
    code, out, _ = _run("registry", "best", "val_acc", "--max", "-n", "2", "-r", root)
    assert code == 0, out
    ranked = sorted(
        (
            (max(v), scanned.run_dir(s), s.run_id)
            for s in scanned.specs
            if (v := scanned.metrics_of(s).get("val_acc"))
        ),
        key=lambda c: (-c[0], c[1]),
    )
    rows = [line for line in out.splitlines() if "run-" in line]
    assert [r.split("\t")[0] for r in rows] == [ranked[0][2], ranked[1][2]]
    assert f"{ranked[0][0]:.6g}" in rows[0]

    code, out, _ = _run("registry", "show", "run-005", "-r", root)
    assert code == 0
    assert "run number 5" in out and "val_loss" in out and "model.depth" in out

    out_file = tmp_path / "runs.parquet"
    code, out, _ = _run("registry", "export", str(out_file), "-r", root, "--tag", "group:a")
    assert code == 0
    frame = pl.read_parquet(out_file)
    assert frame.height == len([s for s in scanned.specs if "group:a" in s.tags])
    assert f"Wrote {frame.height} runs" in out
    csv_file = tmp_path / "runs.csv"
    assert _run("registry", "export", str(csv_file), "-r", root)[0] == 0
    assert pl.read_csv(csv_file).height == len(scanned.specs)


def test_cache_option_and_environment(fresh_generated: GeneratedRegistry, tmp_path: Path) -> None:
    cache = tmp_path / "local" / "cache.sqlite"
    code, _, _ = _run("registry", "scan", str(fresh_generated.root), "--cache", str(cache))
    assert code == 0 and cache.is_file()
    assert not (fresh_generated.root / ".predstore-registry.sqlite").exists()
    code, _, err = _run("registry", "ls", "-n", "1", env={"PREDSTORE_REGISTRY_CACHE": str(cache)})
    assert code == 0 and "1 runs" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ls", "--sort", "loss; DROP TABLE runs"], "unknown field"),
        (["ls", "--status", "zombie"], "unknown status"),
        (["ls", "--where", "hparams.lr"], "cannot parse condition"),
        (["show", "no-such-run"], "no run 'no-such-run'"),
        (["export", "out.xlsx"], "ending in .csv or .parquet"),
        (["export", "/no-such-dir/out.csv"], "the directory /no-such-dir does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(
    scanned: GeneratedRegistry, args: list[str], message: str
) -> None:
    code, _, err = _run("registry", *args, "-r", str(scanned.root))
    assert code == 1
    assert err.startswith("error: ")
    assert message in " ".join(err.split())


def test_a_file_system_error_is_one_clear_line(scanned: GeneratedRegistry, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    taken = out_dir / "runs.csv"
    taken.mkdir(parents=True)  # a directory where the export's file would go
    code, _, err = _run("registry", "export", str(taken), "-r", str(scanned.root))
    assert code == 1
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert f"{taken}: " in err and ".tmp" not in err
    assert [p.name for p in out_dir.iterdir()] == ["runs.csv"]  # no temporary file left


def test_queries_before_any_scan_ask_for_one(tmp_path: Path) -> None:
    code, _, err = _run("registry", "ls", "-r", str(tmp_path))
    assert code == 1
    assert "run `predstore registry scan ROOT` first" in " ".join(err.split())


def test_the_console_script(scanned: GeneratedRegistry) -> None:
    script = shutil.which("predstore")
    assert script is not None, "the predstore console script is not installed"
    env = {**os.environ, **WIDE}
    scan = subprocess.run(
        [script, "registry", "scan", str(scanned.root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert scan.returncode == 0, scan.stderr
    assert "(0 read, 200 unchanged, 0 removed)" in scan.stdout
    show = subprocess.run(
        [script, "registry", "show", "run-001", "--root", str(scanned.root)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert show.returncode == 0, show.stderr
    assert scanned.run_dir(scanned.spec("run-001")) in show.stdout
