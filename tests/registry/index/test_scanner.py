"""The scanner over 200 generated run directories, some damaged."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from predstore.errors import RegistryError
from predstore.registry import Registry, scan
from registry_support import GeneratedRegistry, RunSpec, write_run


def _indexed_dirs(cache: Path) -> set[str]:
    conn = sqlite3.connect(cache)
    try:
        return {row[0] for row in conn.execute("SELECT run_dir FROM runs")}
    finally:
        conn.close()


def test_indexes_good_runs_and_reports_damaged_ones(fresh_generated: GeneratedRegistry) -> None:
    gen = fresh_generated
    report = scan(gen.root)
    assert report.runs == len(gen.specs) == 192
    assert report.read == 200 and report.unchanged == 0 and report.removed == 0
    assert report.cache == gen.root / ".predstore-registry.sqlite"
    reported = {(p.run_dir, p.file): p.fatal for p in report.problems}
    expected = dict.fromkeys(gen.fatal.items(), True)
    expected |= dict.fromkeys(gen.warnings.items(), False)
    assert reported == expected
    assert _indexed_dirs(report.cache) == {gen.run_dir(s) for s in gen.specs}
    assert str(gen.stray_temp) not in {p.run_dir for p in report.problems}
    messages = {p.run_dir: p.message for p in report.problems}
    only_temp = next(d for d in gen.fatal if "run_063" in d)
    assert "only the unfinished temporary file" in messages[only_temp]
    schema_broken = next(d for d in gen.fatal if "run_085" in d)
    assert "$.status" in messages[schema_broken]


def test_rescans_read_only_what_changed(fresh_generated: GeneratedRegistry) -> None:
    gen = fresh_generated
    scan(gen.root)
    again = scan(gen.root)
    assert (again.read, again.unchanged, again.removed) == (0, 200, 0)
    assert len(again.problems) == len(gen.fatal) + len(gen.warnings)  # still reported

    edited = gen.root / gen.specs[0].rel / "sidecar.json"
    doc = json.loads(edited.read_text())
    doc["notes"] = "looked at it"
    edited.write_text(json.dumps(doc))
    write_run(gen.root, RunSpec(rel="exp9/new_run", run_id="brand-new"))
    gone = gen.root / gen.specs[1].rel
    for child in gone.iterdir():
        child.unlink()
    gone.rmdir()
    third = scan(gen.root)
    assert (third.read, third.unchanged, third.removed) == (2, 198, 1)
    assert third.runs == len(gen.specs)
    with Registry.open(gen.root) as registry:
        assert registry.show(gen.specs[0].run_id).info["notes"] == "looked at it"
        assert registry.show("brand").info["run_dir"] == str(gen.root / "exp9/new_run")

    full = scan(gen.root, full=True)
    assert (full.read, full.unchanged) == (200, 0)
    assert full.runs == third.runs


def test_a_fixed_run_leaves_the_problem_list(fresh_generated: GeneratedRegistry) -> None:
    gen = fresh_generated
    scan(gen.root)
    broken = next(d for d in gen.fatal if "run_039" in d)  # its sidecar was deleted
    write_run(gen.root, RunSpec(rel=str(Path(broken).relative_to(gen.root)), run_id="run-039"))
    report = scan(gen.root)
    assert broken not in {p.run_dir for p in report.problems}
    assert report.runs == len(gen.specs) + 1


def test_deleting_the_cache_is_harmless(fresh_generated: GeneratedRegistry) -> None:
    gen = fresh_generated
    first = scan(gen.root)
    with Registry.open(gen.root) as registry:
        before = registry.ls(sort="run_id")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{first.cache}{suffix}").unlink(missing_ok=True)
    rebuilt = scan(gen.root)
    assert rebuilt.read == 200
    with Registry.open(gen.root) as registry:
        after = registry.ls(sort="run_id")
    assert after.drop("last_seen").equals(before.drop("last_seen"))


def test_cache_elsewhere_and_walk_rules(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_run(root, RunSpec(rel="a/b/c/run", run_id="deep"))
    write_run(root, RunSpec(rel=".hidden/run", run_id="hidden"))
    write_run(root, RunSpec(rel="store/inner", run_id="inside-a-store"))
    (root / "store" / "manifest.json").write_text("{}")
    write_run(root, RunSpec(rel="outer", run_id="outer"))
    write_run(root, RunSpec(rel="outer/checkpoints/nested", run_id="nested"))  # inside a run
    (root / "plain").mkdir()
    (root / "plain" / "metrics.csv").write_text("step,loss\n")  # a CSVLogger run: not ours
    os.symlink(root / "a", root / "link")  # not followed: no duplicate
    cache = tmp_path / "elsewhere" / "registry.sqlite"
    report = scan(root, cache=cache)
    assert report.cache == cache
    assert not (root / ".predstore-registry.sqlite").exists()
    with Registry.open(cache=cache) as registry:
        assert sorted(registry.ls()["run_id"]) == ["deep", "outer"]
    assert scan(root, cache=cache, max_depth=2).runs == 1  # a/b/c/run is four levels down


def test_liveness_is_judged_at_scan_time(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_run(
        root,
        RunSpec(
            rel="fresh", run_id="fresh", status="running", heartbeat_age=1.0, heartbeat_interval=0.1
        ),
    )
    write_run(root, RunSpec(rel="old", run_id="old", status="running", heartbeat_age=900.0))
    write_run(
        root,
        RunSpec(
            rel="slow",
            run_id="slow",
            status="running",
            heartbeat_age=900.0,
            heartbeat_interval=600.0,
        ),
    )
    scan(root)
    with Registry.open(root) as registry:
        statuses = dict(registry.ls().select("run_id", "status").iter_rows())
        assert statuses == {"fresh": "running", "old": "stale", "slow": "running"}
        assert abs(registry.scanned_at - time.time()) < 60
    with Registry.open(root, stale_after=0.5) as strict:
        statuses = dict(strict.ls().select("run_id", "status").iter_rows())
        assert statuses["fresh"] == "stale"


def test_bad_roots(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="is not a directory"):
        scan(tmp_path / "absent")


def _edit_json(path: Path, edit: Any) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_one_bad_run_never_breaks_or_hangs_the_scan(
    tmp_path: Path, damaged_run_files: None
) -> None:
    root = tmp_path / "runs"
    deep = "[" * 100_000 + "]" * 100_000
    runs = {
        name: write_run(root, RunSpec(rel=name, run_id=name, metrics={"loss": [1.0, 0.5]}))
        for name in (
            "good",
            "deep_sidecar",
            "deep_summary",
            "deep_heartbeat",
            "huge_attempt",
            "huge_metric_step",
            "huge_heartbeat_step",
            "fifo_heartbeat",
            "fifo_sidecar",
        )
    }
    (runs["deep_sidecar"] / "sidecar.json").write_text(deep)
    (runs["deep_summary"] / "summary.json").write_text(deep)
    (runs["deep_heartbeat"] / "heartbeat.json").write_text(deep)
    _edit_json(runs["huge_attempt"] / "sidecar.json", lambda d: d.update(attempt=10**30))
    _edit_json(
        runs["huge_metric_step"] / "summary.json",
        lambda d: d["metrics"]["loss"].update(step=10**23),
    )
    _edit_json(runs["huge_heartbeat_step"] / "heartbeat.json", lambda d: d.update(step=10**23))
    for name, file in (("fifo_heartbeat", "heartbeat.json"), ("fifo_sidecar", "sidecar.json")):
        (runs[name] / file).unlink()
        os.mkfifo(runs[name] / file)

    # A real process with a deadline: a scan that blocked on a FIFO would never return.
    done = subprocess.run(
        [sys.executable, "-c", f"from predstore.registry import scan; r = scan({str(root)!r})"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = scan(root)
    problems = {(Path(p.run_dir).name, p.file): (p.fatal, p.message) for p in report.problems}
    assert problems[("deep_sidecar", "sidecar.json")][0] is True
    assert "nested too deeply" in problems[("deep_sidecar", "sidecar.json")][1]
    assert problems[("deep_summary", "summary.json")][0] is False
    assert problems[("huge_attempt", "sidecar.json")][0] is True
    assert "beyond 64 bits" in problems[("huge_attempt", "sidecar.json")][1]
    assert problems[("huge_metric_step", "summary.json")][0] is False
    assert problems[("huge_heartbeat_step", "heartbeat.json")][0] is False
    assert "not a regular file" in problems[("fifo_heartbeat", "heartbeat.json")][1]
    assert "not a regular file" in problems[("fifo_sidecar", "sidecar.json")][1]
    indexed = {Path(d).name for d in _indexed_dirs(report.cache)}
    assert indexed == set(runs) - {"deep_sidecar", "huge_attempt", "fifo_sidecar"}
