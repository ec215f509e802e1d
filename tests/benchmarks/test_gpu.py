from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_a_gpu_the_benchmark_says_so_and_measures_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--reps", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert (
        "this machine has none" in done.stderr
        and "torch.cuda.is_available() is False" in done.stderr
    )
    assert done.stdout == ""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_benchmark_measures_every_writer_on_a_gpu() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu", "--samples", "2048", "--reps", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert all(f"| {w} |" in done.stdout for w in ("none", "predstore", "recipe"))
