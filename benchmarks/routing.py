"""Where a fixed-shape vector key belongs: Parquet against Zarr, by the vector's length.

    python -m benchmarks.routing [--rows 200000] [--reps 3]

For float16 and float32 vectors of 8 to 384 elements per sample, ``rows``
samples are written with ``StoreWriter`` in batches of 1,024 (beside an int64
``pred``, as a model's output would be), once with the vector forced to
Parquet and once to Zarr; then the whole key is read back with
``store.read(key)`` in a fresh process, and one sequential pass is made with
``SequentialPredictionDataset(batch_size=1024)``. Each measurement runs in a
subprocess of its own; figures are medians. The rule in
``predstore.write.keys`` (and docs/format.md) is set from these figures.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import WORK, import_libraries, median_of, run_forked, table

LENGTHS = (8, 16, 32, 64, 128, 384)
DTYPES = ("float16", "float32")
BATCH = 1024


def _write(out: Path, rows: int, length: int, dtype: str, storage: str) -> dict[str, Any]:
    import predstore

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((BATCH, length)).astype(dtype)
    pred = np.arange(BATCH, dtype=np.int64)
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    with predstore.StoreWriter(out, keys={"vector": storage}) as writer:
        for first in range(0, rows, BATCH):
            n = min(BATCH, rows - first)
            writer.write(
                {"vector": vectors[:n], "pred": pred[:n]}, indices=np.arange(first, first + n)
            )
    return {"write_s": time.perf_counter() - start}


def _read(out: Path) -> dict[str, Any]:
    import predstore

    start = time.perf_counter()
    values = predstore.open(out).read("vector")
    read_s = time.perf_counter() - start
    assert len(values) > 0
    start = time.perf_counter()
    for _ in predstore.SequentialPredictionDataset(out, keys=["vector"], batch_size=BATCH):
        pass
    return {"read_s": read_s, "sequential_s": time.perf_counter() - start}


def measure(rows: int, length: int, dtype: str, storage: str) -> dict[str, Any]:
    out = WORK / f"routing-{dtype}-{length}-{storage}"
    try:
        result = run_forked(_write, out, rows, length, dtype, storage)
        result |= run_forked(_read, out) if "error" not in result else {}
        if "error" in result:
            raise RuntimeError(f"{dtype}[{length}] in {storage}: {result.get('traceback')}")
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    import_libraries()
    import torch  # noqa: F401  (imported once, before the children fork)

    import predstore  # noqa: F401

    lines = []
    for dtype in DTYPES:
        for length in LENGTHS:
            figures = {}
            for storage in ("parquet", "zarr"):
                runs = [measure(args.rows, length, dtype, storage) for _ in range(args.reps)]
                figures[storage] = median_of(runs)
            p, z = figures["parquet"], figures["zarr"]
            lines.append(
                [
                    f"{dtype}[{length}]",
                    *(f"{p[k]:.3f} / {z[k]:.3f}" for k in ("write_s", "read_s", "sequential_s")),
                    f"{p['write_s'] / z['write_s']:.2f}x",
                    f"{p['sequential_s'] / z['sequential_s']:.2f}x",
                ]
            )
            print(lines[-1], file=sys.stderr, flush=True)
    print(
        table(
            lines,
            [
                "vector",
                "write s (Parquet / Zarr)",
                "read s",
                "sequential pass s",
                "write Parquet/Zarr",
                "sequential Parquet/Zarr",
            ],
        )
    )


if __name__ == "__main__":
    main()
