"""PredictionWriter under real DDP: 2 CPU ranks (gloo), each job in its own processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import predstore
from predict_support import close, expected_logits

JOB = Path(__file__).resolve().parent.parent / "helpers" / "jobs" / "predict_job.py"
pytestmark = pytest.mark.ddp


def run_job(
    path: Path, *args: str, check: bool = True
) -> tuple[dict[str, Any] | None, subprocess.CompletedProcess[str]]:
    # Without PL_GLOBAL_SEED (another test's seed_everything may have set it in this process),
    # as a job nobody seeded: each rank then draws its own shuffle order.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PL_")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    done = subprocess.run(
        [sys.executable, str(JOB), str(path), "--devices", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), done


def test_every_index_exactly_once_without_shuffle(tmp_path: Path) -> None:
    path = tmp_path / "s"
    result, _ = run_job(path, "--samples", "11", "--batch", "3")
    assert result is not None and result["rows"] == 11 and result["warnings"] == []
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(11))
    assert store.coverage[0].duplicates == 0 and store.coverage[0].missing == 0
    assert close(store.read("logits"), expected_logits(range(11)))
    assert store.scan(sort=True).collect()["name"].to_list() == [f"case-{i:05d}" for i in range(11)]
    write = store.manifest.writes[0]
    assert write.world_size == 2 and write.ranks == {0: "closed", 1: "closed"}
    assert {p.rank for p in store.manifest.parts} == {0, 1}


def test_shuffle_in_ddp_predict_is_labelled_right_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "s"
    result, _ = run_job(path, "--samples", "11", "--batch", "3", "--shuffle")
    store = predstore.open(path)
    cover = store.coverage[0]
    assert cover.written == 11  # Lightning's predict sampler does not pad: 6 + 5
    assert cover.duplicates > 0 and cover.missing is not None and cover.missing > 0
    assert cover.unique + cover.missing == 11
    assert result is not None and len(result["warnings"]) == 1
    warning = result["warnings"][0]
    assert "duplicated indices" in warning and "missing" in warning and "shuffle=True" in warning
    indices = store.indices()
    assert close(
        store.read("logits", indices), expected_logits(indices)
    )  # every row has its true index
    names = store.rows.names(store.rows.locate(indices))
    assert names == [f"case-{i:05d}" for i in indices]


def test_strict_turns_the_report_into_an_error_after_committing(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _, done = run_job(path, "--samples", "11", "--batch", "3", "--shuffle", "--strict", check=False)
    assert done.returncode != 0 and "CoverageError" in done.stderr
    store = predstore.open(path)  # committed before the error
    assert store.coverage[0].duplicates > 0


def test_iterable_dataset_with_index_key(tmp_path: Path) -> None:
    path = tmp_path / "s"
    run_job(path, "--samples", "13", "--batch", "4", "--dataset", "iterable")
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(13))
    assert store.manifest.writes[0].index_source == "index_key"
    assert close(store.read("logits"), expected_logits(range(13)))


def test_subset_in_ddp(tmp_path: Path) -> None:
    path = tmp_path / "s"
    run_job(path, "--samples", "9", "--batch", "2", "--dataset", "subset")
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(1, 18, 2))
    assert close(store.read("logits"), expected_logits(range(1, 18, 2)))


def test_ranks_that_do_not_share_storage_fail_before_predicting(tmp_path: Path) -> None:
    _, done = run_job(tmp_path / "s", "--rank-path", check=False)
    assert done.returncode != 0
    assert "ranks do not share storage" in done.stderr
    assert not (tmp_path / "s" / "rank0" / "manifest.json").exists()


def test_a_failing_rank_keeps_what_every_rank_committed(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _, done = run_job(path, "--samples", "40", "--batch", "4", "--fail-at", "3", check=False)
    assert done.returncode != 0
    predstore.finalize(path)
    store = predstore.open(path)
    indices = store.indices()
    assert len(indices) >= 12 and np.array_equal(np.unique(indices), indices)
    assert close(store.read("logits", indices), expected_logits(indices))
