"""The crash-injection harness: run a real write in a subprocess, SIGKILL it, check the store.

One trial, from a seed: a standalone write by 1-3 simulated ranks (mode error,
append onto a store or overwrite of a store), killed at a crash point of
tests/helpers/crash_points.py or after a random delay. Then, for every trial:

1. ``predstore.open`` reads a complete, consistent store (every visible row
   holds exactly the values its index was written with) or fails with
   ``StoreNotCommittedError``; nothing else;
2. ``finalize`` recovers every row that a rank manifest had committed, and
   ``verify`` passes;
3. a resumed write completes the job, after finalize and without it: every
   index exactly once, with the values an uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

import predstore
from crash_points import KINDS
from jobs.crash_job import rows, run
from predstore.read.verify import verify

JOB = Path(__file__).resolve().parent / "jobs" / "crash_job.py"
OLD = list(range(1000, 1020))  # rows of the store an overwrite replaces
OTHER_SPLIT = 1  # the dataloader of the rows an append adds to
ONCE = ("decide", "publish", "finalize")  # moments a job passes once


@dataclass
class Trial:
    seed: int
    ranks: int
    samples: int
    batch: int
    mode: str
    crash: str
    delay: float | None
    killed: bool = False
    committed_before: bool = False

    def describe(self) -> str:
        how = f"after {self.delay:.2f} s" if self.delay is not None else f"at {self.crash}"
        return f"seed {self.seed}: {self.ranks} rank(s), {self.samples} rows, batch {self.batch}, mode {self.mode}, killed {how}"


def plan(seed: int) -> Trial:
    rng = random.Random(seed)
    kind = rng.choice([*KINDS, "between-ranks", "time", "time"])
    return Trial(
        seed=seed,
        ranks=rng.choice([1, 2, 3]),
        samples=rng.randint(40, 160),
        batch=rng.randint(1, 13),
        mode=rng.choice(["error", "append", "overwrite"]),
        crash=kind
        if kind in ("time", "between-ranks")
        else f"{kind}:{1 if kind in ONCE else rng.randint(1, 8)}",
        delay=rng.uniform(0.3, 1.2) if kind == "time" else None,
    )


def run_trial(seed: int, root: Path) -> Trial:
    """Run and check one trial; raise AssertionError naming the trial if anything is wrong."""
    trial = plan(seed)
    path = root / "store"
    try:
        _prepare(trial, path)
        trial.killed = _run_job(trial, path)
        _check_open(trial, path)
        recovered = _committed_rows(path)
        after_finalize = root / "finalized"
        if path.exists():  # a very early kill leaves nothing at all
            shutil.copytree(path, after_finalize)
        _check_finalize(trial, after_finalize, recovered)
        _check_resume(trial, after_finalize)
        _check_resume(trial, path)  # straight from the crash, adopting the unfinished write
    except AssertionError as e:
        raise AssertionError(f"{trial.describe()}: {e}") from e
    return trial


def _prepare(trial: Trial, path: Path) -> None:
    if trial.mode == "error":
        return
    trial.committed_before = True
    with predstore.StoreWriter(path, keys={"mask": "zarr"}, retention=0) as writer:
        if trial.mode == "append":
            writer.write(rows(list(range(20))), list(range(20)), dataloader_idx=OTHER_SPLIT)
        else:
            writer.write(rows(OLD), OLD)


def _run_job(trial: Trial, path: Path) -> bool:
    """Run the write in its own process group; True when it was killed."""
    args = [
        sys.executable,
        str(JOB),
        str(path),
        "--ranks",
        str(trial.ranks),
        "--samples",
        str(trial.samples),
        "--batch",
        str(trial.batch),
        "--mode",
        trial.mode,
    ]
    if trial.crash == "between-ranks":
        args.append("--die-between-ranks")
    elif trial.delay is None:
        args += ["--crash", trial.crash]
    job = subprocess.Popen(
        args, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if trial.delay is not None:
        try:
            job.wait(trial.delay)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
    _, err = job.communicate(timeout=120)
    assert job.returncode in (0, -signal.SIGKILL), f"the job failed by itself:\n{err[-2000:]}"
    return job.returncode == -signal.SIGKILL


def _check_rows(store: predstore.Store) -> None:
    """Every visible row holds the values its index was written with."""
    for dl in sorted(store.coverage):
        indices = store.indices(dl)
        assert len(np.unique(indices)) == len(indices)
        want = rows(indices.tolist())
        for key in ("logits", "pred", "prob"):
            assert np.array_equal(store.read(key, indices, dataloader_idx=dl), want[key]), key
        for got, expected in zip(
            store.read("mask", indices, dataloader_idx=dl), want["mask"], strict=True
        ):
            assert np.array_equal(got, expected)
    assert len(store) == sum(len(store.indices(dl)) for dl in store.coverage)


def _check_open(trial: Trial, path: Path) -> None:
    try:
        store = predstore.open(path)
    except predstore.StoreNotCommittedError:
        assert not trial.committed_before, "the store committed before the write is not readable"
        return
    _check_rows(store)


def _committed_rows(path: Path) -> set[tuple[int, int]]:
    """What finalize must recover, read from the files without predstore: the committed rows
    of the store (unless an overwrite replaces it) and the parts every rank manifest lists."""
    manifest = _newest_manifest(path)
    generation = manifest["generation"] if manifest else 0
    ranks = [
        m
        for m in map(_json, path.glob("writes/*/rank-*.json"))
        if m and m["base_generation"] == generation
    ]
    ranks = [
        m
        for m in ranks
        if not manifest or m["write_id"] not in {w["write_id"] for w in manifest["writes"]}
    ]
    rows: dict[str, int] = {}
    for m in ranks:
        rows[m["write_id"]] = rows.get(m["write_id"], 0) + sum(p["rows"] for p in m["parts"])
    ranks = [m for m in ranks if rows[m["write_id"]]]  # a write without rows changes nothing
    parts = [p for m in ranks for p in m["parts"]]
    if manifest and not any(m["mode"] == "overwrite" for m in ranks):
        parts += manifest["parts"]
    found: set[tuple[int, int]] = set()
    for part in parts:
        table = pq.read_table(path / part["path"], columns=["dataloader_idx", "index"])
        found |= set(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
    return found


def _newest_manifest(path: Path) -> Any:
    """The checkpoint with every newer commit record applied (records add, or replace all)."""
    manifest = _json(path / "manifest.json")
    while True:
        generation = manifest["generation"] + 1 if manifest else 1
        record = _json(path / "_commits" / f"{generation:010d}.json")
        if record is None:
            return manifest
        if not record["replaces"]:
            for field in ("writes", "parts", "arrays"):
                record[field] = manifest[field] + record[field]
        manifest = record


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _check_finalize(trial: Trial, path: Path, recovered: set[tuple[int, int]]) -> None:
    refused = ""
    try:
        predstore.finalize(path, retention=0)
    except predstore.StoreNotCommittedError:
        assert not recovered, "finalize found nothing, but rank manifests had committed rows"
        return
    except predstore.StoreExistsError as e:
        refused = str(e)
    if refused:
        # An unfinished overwrite with fewer rows than the store: the store stays as it was
        # unless the user says so.
        assert trial.mode == "overwrite" and "unfinished overwrite" in refused, refused
        assert set(predstore.open(path).indices(0).tolist()) == set(OLD)
        predstore.finalize(path, retention=0, allow_shrink=True)
    store = predstore.open(path)
    visible = {(dl, int(i)) for dl in store.coverage for i in store.indices(dl)}
    assert visible == recovered, (
        f"finalize recovered {len(visible)} rows, rank manifests had {len(recovered)}"
    )
    _check_rows(store)
    report = verify(path, deep=True)
    assert report.ok, f"verify after finalize: {report.problems} {report.unfinished}"


def _check_resume(trial: Trial, path: Path) -> None:
    run(str(path), ranks=trial.ranks, samples=trial.samples, batch_size=trial.batch, mode="resume")
    store = predstore.open(path)
    indices = set(store.indices(0).tolist())
    extra = indices - set(range(trial.samples))
    assert set(range(trial.samples)) <= indices, (
        f"missing {sorted(set(range(trial.samples)) - indices)[:5]}"
    )
    assert extra <= set(OLD), f"unexpected rows {sorted(extra)[:5]}"
    assert store.coverage[0].duplicates == 0
    if trial.mode == "append":
        assert store.indices(OTHER_SPLIT).tolist() == list(range(20))
    _check_rows(store)
    assert verify(path).ok


def soak(trials: int, root: Path, first_seed: int = 0) -> dict[str, Any]:
    """Run many trials; return a summary (how many were killed at each kind of moment)."""
    kinds: dict[str, int] = {}
    killed = 0
    start = time.perf_counter()
    for seed in range(first_seed, first_seed + trials):
        where = root / f"t{seed}"
        trial = run_trial(seed, where)
        kind = "time" if trial.delay is not None else trial.crash.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + int(trial.killed)
        killed += int(trial.killed)
        shutil.rmtree(where, ignore_errors=True)
    return {
        "trials": trials,
        "killed": killed,
        "killed_by_moment": kinds,
        "seconds": time.perf_counter() - start,
    }
