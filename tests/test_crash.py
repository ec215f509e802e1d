"""Crash injection: real writes in subprocesses, killed with SIGKILL; see tests/helpers/crash_support.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import predstore
from crash_support import plan, run_trial, soak
from predict_support import close, expected_logits, resume_and_check
from predstore.read.verify import verify

PREDICT_JOB = Path(__file__).resolve().parent / "helpers" / "jobs" / "predict_job.py"


@pytest.mark.parametrize("seed", range(30))
def test_a_killed_write_loses_nothing_it_committed(seed: int, tmp_path: Path) -> None:
    run_trial(seed, tmp_path)


def test_the_seeds_reach_every_kind_of_moment() -> None:
    moments = {plan(seed).crash.split(":")[0] for seed in range(30)}
    assert moments >= {
        "part-write",
        "shard-write",
        "rename",
        "rank-manifest",
        "decide",
        "publish",
        "finalize",
        "between-ranks",
        "time",
    }


@pytest.mark.slow
@pytest.mark.timeout(0)
def test_soak(tmp_path: Path) -> None:
    """Hundreds of trials (PREDSTORE_SOAK_TRIALS, default 300); prints the summary for docs/resilience.md."""
    summary = soak(int(os.environ.get("PREDSTORE_SOAK_TRIALS", "300")), tmp_path, first_seed=1000)
    print(json.dumps(summary))


DDP_KILLS = [("shard-write:3", None), ("rank-manifest:2", None), ("decide:1", None), (None, 6.5)]


@pytest.mark.ddp
@pytest.mark.parametrize(("crash", "delay"), DDP_KILLS)
def test_a_killed_ddp_predict_is_recovered_and_resumed(
    tmp_path: Path, crash: str | None, delay: float | None
) -> None:
    path = tmp_path / "s"
    args = [
        sys.executable,
        str(PREDICT_JOB),
        str(path),
        "--devices",
        "2",
        "--samples",
        "200",
        "--batch",
        "8",
    ]
    job = subprocess.Popen(
        [*args, "--crash", crash] if crash else args,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job.wait(delay if delay is not None else 300)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
    job.communicate(timeout=60)
    if crash is not None:
        assert job.returncode == -signal.SIGKILL  # it died at the crash point, not by finishing
    try:
        store = predstore.open(path)
        indices = store.indices()
        assert close(store.read("logits", indices), expected_logits(indices))
    except predstore.StoreNotCommittedError:
        pass
    try:
        predstore.finalize(path)
        assert verify(path, deep=True).ok
    except predstore.StoreNotCommittedError:
        # Nothing committed: no rank manifest lists a part. A part file whose rank manifest
        # never recorded it (the crash came first) may remain, unread, until vacuum.
        for rank_manifest in path.glob("writes/*/rank-*.json"):
            assert not json.loads(rank_manifest.read_text())["parts"], rank_manifest
    resume_and_check(path, 200)
    assert verify(path).ok
