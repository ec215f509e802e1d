"""Readers while a writer commits: always one whole generation, never a mix."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import predstore
from jobs.crash_job import rows

JOB = Path(__file__).resolve().parent.parent / "helpers" / "jobs" / "append_job.py"


def check_generation(store: predstore.Store) -> None:
    """The store a reader opened is whole: its rows are consecutive appends, all readable."""
    indices = store.indices()
    assert len(indices) == len(store) == store.manifest.rows
    if len(indices):
        assert indices[-1] - indices[0] + 1 == len(
            indices
        )  # whole generations: no gaps, no partial one
        assert len(indices) % 30 == 0
        want = rows(indices.tolist())
        assert np.array_equal(store.read("logits", indices), want["logits"])
        assert all(
            np.array_equal(a, b)
            for a, b in zip(store.read("mask", indices), want["mask"], strict=True)
        )


def watch(path: Path, job: subprocess.Popen[bytes]) -> tuple[set[int], int]:
    generations: set[int] = set()
    not_yet = 0
    while job.poll() is None:
        try:
            store = predstore.open(path)
        except predstore.StoreNotCommittedError:
            not_yet += 1
            continue
        check_generation(store)
        generations.add(store.manifest.generation)
    assert job.returncode == 0
    return generations, not_yet


def test_a_reader_sees_the_last_commit_while_appends_go_on(tmp_path: Path) -> None:
    path = tmp_path / "s"
    job = subprocess.Popen([sys.executable, str(JOB), str(path), "--generations", "25"])
    generations, _ = watch(path, job)
    assert len(generations) > 3  # the reader really watched commits happen
    final = predstore.open(path)
    assert final.manifest.generation == 25 and len(final) == 750


def test_readers_of_replaced_generations_keep_reading_within_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "s"
    job = subprocess.Popen(
        [sys.executable, str(JOB), str(path), "--generations", "12", "--overwrite-every", "4"]
    )
    opened: list[predstore.Store] = []
    while job.poll() is None:
        try:
            opened.append(predstore.open(path))
        except predstore.StoreNotCommittedError:
            continue
        time.sleep(0.05)
    assert job.returncode == 0
    recent = [s for s in opened if s.manifest.generation >= 9]
    assert recent
    for store in recent:  # opened less than the retention (0.5 s) before the last overwrite
        check_generation(store)
