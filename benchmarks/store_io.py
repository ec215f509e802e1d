"""Writing and reading a W1-like workload: StoreWriter against one torch.save file per sample
and against a plain pyarrow ParquetWriter (the floor any columnar store must reach).

    python -m benchmarks.store_io [--samples 50000] [--reps 3]

Each contender runs in its own subprocess per repetition; figures are medians.
The ParquetWriter floor disables dictionary encoding for the float columns,
as anyone streaming logits would (with pyarrow's defaults it tries a
dictionary on every float page and writes about 10x slower; that figure is
printed too, for reference).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.alternatives import arrow_batch, sample_of
from benchmarks.common import (
    WORK,
    Workload,
    batches,
    disk_usage,
    import_libraries,
    machine,
    median_of,
    peak_rss_mb,
    run_isolated,
    table,
    timed,
    w1,
    warm_page_cache,
)

CONTENDERS = ("predstore", "parquet_floor", "parquet_defaults", "torch_save")
GROUP_BY = "group_by('pred').agg(len, mean(prob))"


def _prepare(workload: Workload) -> tuple[list[dict[str, Any]], float]:
    import psutil

    import_libraries()
    data = list(batches(workload))
    return data, psutil.Process().memory_info().rss / 2**20


def run_predstore(workload: Workload, out: Path) -> dict[str, Any]:
    import polars as pl
    import torch

    import predstore

    data, baseline = _prepare(workload)
    tensors = [
        {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in b.items()}
        for b in data
    ]

    def write() -> None:
        with predstore.StoreWriter(out) as writer:
            for b in tensors:
                outputs = {k: v for k, v in b.items() if k not in ("index", "name")}
                writer.write(outputs, b["index"], names=b["name"])

    seconds, _ = timed(write)
    peak = peak_rss_mb()
    read_seconds, logits = timed(lambda: predstore.open(out).read("logits"))
    assert logits.shape == (workload.samples, 1000) and np.array_equal(
        logits[:256], data[0]["logits"]
    )

    def query():
        return (
            predstore.open(out)
            .scan(["pred", "prob"])
            .group_by("pred")
            .agg(pl.len(), pl.col("prob").mean())
            .collect()
        )

    group_seconds = min(timed(query)[0] for _ in range(5))
    return _figures(workload, out, seconds, peak, baseline, read_seconds, group_seconds)


def run_parquet(workload: Workload, out: Path, *, tuned: bool) -> dict[str, Any]:
    import polars as pl
    import pyarrow.parquet as pq

    data, baseline = _prepare(workload)
    path = out / "floor.parquet"
    out.mkdir(parents=True)
    options: dict[str, Any] = {"use_dictionary": ["name"]} if tuned else {}

    def write() -> None:
        writer = None
        for b in data:
            rows = arrow_batch(b, b["index"], workload)
            writer = writer or pq.ParquetWriter(path, rows.schema, **options)
            writer.write_batch(rows)
        assert writer is not None
        writer.close()

    seconds, _ = timed(write)
    peak = peak_rss_mb()

    def read() -> np.ndarray:
        column = pq.read_table(path, columns=["logits"]).column("logits").combine_chunks()
        return column.flatten().to_numpy().reshape(len(column), -1)

    read_seconds, logits = timed(read)
    assert np.array_equal(logits[:256], data[0]["logits"])

    def query():
        return pl.scan_parquet(path).group_by("pred").agg(pl.len(), pl.col("prob").mean()).collect()

    group_seconds = min(timed(query)[0] for _ in range(5))
    return _figures(workload, out, seconds, peak, baseline, read_seconds, group_seconds)


def run_torch_save(workload: Workload, out: Path) -> dict[str, Any]:
    import pandas as pd
    import torch

    data, baseline = _prepare(workload)
    tensors = [
        {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in b.items()}
        for b in data
    ]
    out.mkdir(parents=True)

    def write() -> None:
        for b in tensors:
            for i, index in enumerate(b["index"].tolist()):
                torch.save(sample_of(b, i, workload), out / f"{index}.pt")

    seconds, _ = timed(write)
    peak = peak_rss_mb()

    def load_all() -> list[dict[str, Any]]:
        return [torch.load(out / f"{i}.pt") for i in range(workload.samples)]

    read_seconds, samples = timed(load_all)
    assert torch.equal(samples[0]["logits"], tensors[0]["logits"][0])

    def query() -> Any:
        rows = [torch.load(out / f"{i}.pt") for i in range(workload.samples)]
        frame = pd.DataFrame(
            {"pred": [int(r["pred"]) for r in rows], "prob": [float(r["prob"]) for r in rows]}
        )
        return frame.groupby("pred")["prob"].agg(["count", "mean"])

    group_seconds, _ = timed(query)
    return _figures(workload, out, seconds, peak, baseline, read_seconds, group_seconds)


def _figures(
    workload: Workload,
    out: Path,
    seconds: float,
    peak: float,
    baseline: float,
    read_seconds: float,
    group_seconds: float,
) -> dict[str, Any]:
    size, files = disk_usage(out)
    data_files = sum(1 for p in out.rglob("*") if p.is_file() and p.suffix != ".json")
    return {
        "write_s": seconds,
        "samples_per_s": workload.samples / seconds,
        "payload_mb_per_s": workload.payload / seconds / 1e6,
        "disk_mb": size / 1e6,
        "files": files,
        "data_files": data_files,
        "peak_rss_mb": peak,
        "write_rss_mb": max(0.0, peak - baseline),
        "read_logits_mb_per_s": workload.samples * 4000 / read_seconds / 1e6,
        "group_by_s": group_seconds,
    }


def measure(contender: str, samples: int) -> dict[str, Any]:
    workload = w1(samples)
    out = WORK / f"store_io-{contender}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        if contender == "predstore":
            return run_predstore(workload, out)
        if contender == "torch_save":
            return run_torch_save(workload, out)
        return run_parquet(workload, out, tuned=contender == "parquet_floor")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(measure(args.run, args.samples)))
        return
    warm_page_cache(3 * w1(args.samples).payload >> 20)
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS}
    for _ in range(args.reps):  # interleaved, so drifts of the machine hit every contender alike
        for contender in CONTENDERS:
            runs[contender].append(
                run_isolated(
                    "benchmarks.store_io", ["--run", contender, "--samples", str(args.samples)]
                )
            )
            print(f"{contender}: {json.dumps(runs[contender][-1])}", file=sys.stderr)
    results = {c: median_of(r) for c, r in runs.items()}
    print(report(results, w1(args.samples)))


def report(results: dict[str, dict[str, Any]], workload: Workload) -> str:
    ours, floor, loose = results["predstore"], results["parquet_floor"], results["torch_save"]
    rows = [
        [
            name,
            f"{r['samples_per_s']:,.0f}",
            f"{r['payload_mb_per_s']:,.0f}",
            f"{r['disk_mb']:,.0f}",
            f"{r['files']:,}",
            f"{r['data_files']:,}",
            f"{r['peak_rss_mb']:,.0f}",
            f"{r['write_rss_mb']:,.0f}",
            f"{r['read_logits_mb_per_s']:,.0f}",
            f"{r['group_by_s'] * 1000:,.1f}",
        ]
        for name, r in results.items()
    ]
    header = [
        "contender",
        "write samples/s",
        "write MB/s",
        "disk MB",
        "files",
        "data files",
        "peak RSS MB",
        "RSS added by writing MB",
        "read logits MB/s",
        f"{GROUP_BY} ms",
    ]
    bound = workload.payload / 2**24
    lines = [
        f"{workload.name}: {workload.samples:,} samples, {workload.payload / 1e6:,.0f} MB payload, batch {workload.batch}; medians; {machine()['date']}, {machine()['cpus']} cores",
        "",
        table(rows, header),
        "",
        f"- predstore / parquet floor, write samples/s: {ours['samples_per_s'] / floor['samples_per_s']:.2f}x (bar: >= 0.8x)",
        f"- predstore / torch.save per sample, write samples/s: {ours['samples_per_s'] / loose['samples_per_s']:.0f}x (bar: >= 50x)",
        f"- predstore data files: {ours['data_files']} (bar: <= payload/16 MiB + a handful = {bound:.1f} + ~4)",
        f"- predstore scan group-by / polars on the floor's file: {ours['group_by_s'] / floor['group_by_s']:.2f}x (bar: <= 2x)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
