"""``predstore view`` at scale: how fast its pages answer on a large store, and its memory.

    python -m benchmarks.view [--rows 10000000] [--compare-rows 1000000] [--reps 3]

Writes (once, then reuses) a store of ``--rows`` samples (pred, label, prob,
a name and float32[100] logits in Zarr) and two stores of ``--compare-rows``
that disagree on a tenth of their predictions; starts a real ``predstore
view`` server on them in a subprocess and times, through HTTP, the overview,
a filtered and sorted rows page, a histogram (computed, never from the
viewer's cache), a sample page and a compare. Prints medians of ``--reps``
(each repetition asks something the viewer has not cached) and the server's
peak RSS; ``polars directly`` is the same filter and sort run in this
process, the floor the rows page stands on.

Run final measurements alone: flock /tmp/predstore-bench.lock python -m benchmarks.view
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

import predstore
from benchmarks.common import WORK, machine
from predstore.read.filters import where_expr

BATCH = 200_000
ROWS_FILTER = "prob < 0.05 AND pred != label"


def write_store(path: Path, rows: int, seed: int, logits: bool) -> Path:
    """``rows`` samples over 10 classes; the model is right on about 90% of them."""
    if (path / "manifest.json").exists() and len(predstore.open(path)) == rows:
        return path
    rng = np.random.default_rng(seed)
    keys = {"logits": predstore.KeySpec(storage="zarr")} if logits else None
    with predstore.StoreWriter(path, mode="overwrite", keys=keys, expected={0: rows}) as writer:
        for start in range(0, rows, BATCH):
            n = min(BATCH, rows - start)
            index = np.arange(start, start + n)
            label = index % 10
            wrong = rng.random(n) < 0.1
            batch: dict[str, Any] = {
                "pred": np.where(wrong, (label + 1 + rng.integers(0, 9, n)) % 10, label),
                "label": label,
                "prob": rng.random(n, dtype=np.float32),
            }
            if logits:
                batch["logits"] = rng.standard_normal((n, 100), dtype=np.float32)
            writer.write(batch, index.tolist(), names=[f"sample-{i:08d}" for i in index])
    return path


class Server:
    """``predstore view`` in a subprocess; requests through one HTTP client that holds the token."""

    def __init__(self, paths: list[Path]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "predstore", "view", *map(str, paths)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"(http://\S+)/\?token=(\S+)", line)
        if url is None:
            raise RuntimeError(f"predstore view printed {line!r}")
        self.client = httpx.Client(base_url=url.group(1), timeout=600)
        self.client.get("/", params={"token": url.group(2)})

    def get(self, route: str, **params: Any) -> float:
        start = time.perf_counter()
        answer = self.client.get(route, params=params)
        elapsed = time.perf_counter() - start
        if answer.status_code != 200 or 'class="error"' in answer.text:
            raise RuntimeError(f"{route} {params}: {answer.status_code} {answer.text[:500]}")
        return elapsed

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def measure_large(store: Path, reps: int, rows: int) -> dict[str, Any]:
    server = Server([store])
    try:
        figures: dict[str, Any] = {"first overview (opens the store)": server.get("/store")}
        figures["first sample (waits for the row index)"] = server.get("/sample", index=0)
        runs: dict[str, list[float]] = {
            "overview": [],
            "rows page, filtered and sorted": [],
            "histogram": [],
            "sample page": [],
        }
        keys = ["prob", "pred", "label"]
        for rep in range(reps):
            runs["overview"].append(server.get("/store"))
            runs["rows page, filtered and sorted"].append(
                server.get("/rows", where=f"{ROWS_FILTER} AND label != {rep}", sort="prob")
            )
            runs["histogram"].append(server.get("/api/histogram", key=keys[rep % len(keys)]))
            runs["sample page"].append(server.get("/sample", index=(rep + 1) * rows // (reps + 1)))
        figures.update({name: statistics.median(times) for name, times in runs.items()})
        figures["server peak RSS (MiB)"] = server.peak_rss_mb()
    finally:
        server.close()
    opened = predstore.open(store)
    floor = []
    for rep in range(reps):
        expr = where_expr(
            f"{ROWS_FILTER} AND label != {rep}", opened.scan().collect_schema().names()
        )
        start = time.perf_counter()
        frame = opened.scan().filter(expr).sort("prob")
        frame.select(pl.len()).collect()
        frame.slice(0, 50).collect()
        floor.append(time.perf_counter() - start)
    figures["polars directly: the same filter, count and first page"] = statistics.median(floor)
    return figures


def measure_compare(a: Path, b: Path, reps: int) -> dict[str, Any]:
    server = Server([a, b])
    try:
        listings = ["disagree", "fixed", "broken"]
        times = [
            server.get("/compare", a=str(a), b=str(b), list=listings[rep % 3])
            for rep in range(reps)
        ]
        return {"compare": statistics.median(times), "server peak RSS (MiB)": server.peak_rss_mb()}
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.view", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--compare-rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=WORK / "view")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    large = write_store(args.work / f"large-{args.rows}.pstore", args.rows, 0, logits=True)
    a = write_store(args.work / f"a-{args.compare_rows}.pstore", args.compare_rows, 1, logits=False)
    b = write_store(args.work / f"b-{args.compare_rows}.pstore", args.compare_rows, 2, logits=False)
    print(f"stores ready in {time.perf_counter() - started:.0f} s", flush=True)
    results = {
        "machine": machine(),
        "rows": args.rows,
        "compare_rows": args.compare_rows,
        "reps": args.reps,
        "large": measure_large(large, args.reps, args.rows),
        "compare": measure_compare(a, b, args.reps),
    }
    for section in ("large", "compare"):
        for name, value in results[section].items():
            unit = "" if "MiB" in name else " s"
            print(f"{section:8} {name:58} {value:10.3f}{unit}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
