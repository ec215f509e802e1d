"""What checking checksums costs readers: this tree's predstore against another tree's (main).

    python -m benchmarks.read_checks --baseline /path/to/other/checkout/src [--rows 20000] [--reps 5]

Each tree writes its own store of the same data (a float32[1024] key stored
uncompressed, a uint8[4096] mask in zstd, two small Parquet keys), then,
in a fresh process per repetition, alternating trees, times the default
reads: a whole key, random rows, a Parquet key, random Dataset items, and
``verify`` with ``deep=True``. Each repetition takes the best of three runs
(page cache warm) of both the wall time and the CPU time of the process (all
its threads): on a shared machine the wall time is mostly other jobs' load,
the CPU time is what the checks cost. Figures are medians over repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "read_checks"
READS = ("whole_key", "random_rows", "zstd_key", "parquet_key", "dataset_items", "verify_deep")


def write(path: Path, rows: int) -> None:
    import predstore

    rng = np.random.default_rng(0)
    keys = {"mask": {"codec": "zstd"}, "logits": {"codec": "none"}}
    with predstore.StoreWriter(path, keys=keys) as writer:
        for start in range(0, rows, 256):
            n = min(256, rows - start)
            writer.write(
                {
                    "logits": rng.standard_normal((n, 1024)).astype(np.float32),
                    "mask": (rng.random((n, 4096)) < 0.05).astype(np.uint8),
                    "pred": rng.integers(0, 10, n),
                    "prob": rng.random(n).astype(np.float32),
                },
                range(start, start + n),
            )


def best_of(fn: Any, runs: int = 3) -> tuple[float, float]:
    """The least wall time and the least CPU time of ``runs`` calls of ``fn``."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def measure(path: Path) -> dict[str, tuple[float, float]]:
    import predstore
    from predstore.read.verify import verify

    store = predstore.open(path)
    rng = np.random.default_rng(1)
    rows = len(store)
    some = rng.choice(rows, min(rows, 2048), replace=False)
    items = rng.choice(rows, min(rows, 256), replace=False)
    store.read("logits", [0])  # open the arrays: not what is measured

    def dataset_items() -> None:
        dataset = store.dataset(["logits", "mask"], as_torch=False, cache_bytes=0)
        for i in items.tolist():
            dataset[i]

    return {
        "whole_key": best_of(lambda: store.read("logits")),
        "random_rows": best_of(lambda: store.read("logits", some)),
        "zstd_key": best_of(lambda: store.read("mask")),
        "parquet_key": best_of(lambda: store.read("prob", some)),
        "dataset_items": best_of(dataset_items),
        "verify_deep": best_of(lambda: verify(path, deep=True), runs=1),
    }


def run_tree(src: Path, store: Path, rows: int, action: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT.parent}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.read_checks",
            f"--{action}",
            str(store),
            "--rows",
            str(rows),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT.parent,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{src}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]) if action == "measure" else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, help="src/ of the predstore to compare with")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write(args.write, args.rows)
        return
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    trees = {"baseline": args.baseline.resolve(), "this": (ROOT.parent / "src").resolve()}
    shutil.rmtree(WORK, ignore_errors=True)
    for name, src in trees.items():
        run_tree(src, WORK / name, args.rows, "write")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for rep in range(args.reps):
        order = list(trees.items()) if rep % 2 == 0 else list(trees.items())[::-1]
        for name, src in order:
            runs[name].append(run_tree(src, WORK / name, args.rows, "measure"))
    print(f"rows {args.rows}, {args.reps} repetitions, medians in ms (wall / CPU of all threads)")
    print("| read | baseline wall | this wall | ratio | baseline CPU | this CPU | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for read in READS:
        base, this = (
            np.median([r[read] for r in runs[name]], axis=0) * 1000 for name in ("baseline", "this")
        )
        print(
            f"| {read} | {base[0]:.1f} | {this[0]:.1f} | {this[0] / base[0]:.2f}x "
            f"| {base[1]:.1f} | {this[1]:.1f} | {this[1] / base[1]:.2f}x |"
        )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
