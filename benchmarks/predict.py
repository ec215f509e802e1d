"""trainer.predict on W1 with a trivial model: no writer, PredictionWriter, a per-sample
torch.save writer callback, and a callback streaming the same batches to a plain pyarrow
ParquetWriter, in one run; then with a model that waits 20 ms per batch (as a GPU
leaves the CPU idle); then peak RSS of PredictionWriter at 10,000 and 100,000 samples.

    python -m benchmarks.predict [--samples 50000] [--reps 3]

Overhead of a writer = (predict time with it) - (predict time without any writer).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.alternatives import CONTENDERS
from benchmarks.common import (
    WORK,
    disk_usage,
    import_libraries,
    machine,
    median_of,
    peak_rss_mb,
    predict_trainer,
    run_isolated,
    table,
    w1,
    warm_page_cache,
)

WRITERS = ("none", "predstore", "parquet", "torch_save")
NO_COPY = "predstore-nocopy"
"""PredictionWriter without its copy of each batch's outputs (right for this model, which never
refills its outputs in place): the difference to ``predstore`` is what the copy costs."""


def _setup(samples: int, sleep: float) -> tuple[Any, Any, Any]:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, Dataset

    workload = w1(samples)

    class Rows(Dataset):
        """Logits made per batch from the batch's first index (the dataset itself holds nothing,
        so peak RSS measures the writer); __getitems__ hands out a whole batch at once."""

        def __len__(self) -> int:
            return samples

        def __getitems__(self, indices: list[int]) -> dict[str, Any]:
            generator = torch.Generator().manual_seed(indices[0])
            return {
                "index": torch.as_tensor(indices),
                "logits": torch.randn(len(indices), 1000, generator=generator),
            }

    class Trivial(pl.LightningModule):
        def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
            if sleep:
                time.sleep(sleep)
            out = batch["logits"]
            prob, pred = out.softmax(1).max(1)
            names = [f"sample-{i:07d}" for i in batch["index"].tolist()]
            return {"logits": out, "pred": pred, "prob": prob, "name": names}

    loader = DataLoader(Rows(), batch_size=workload.batch, collate_fn=lambda b: b)
    return workload, Trivial(), loader


def _callback(writer: str, out: Path, samples: int) -> Any:
    """The writer callback of ``benchmarks.alternatives``: predstore, torch_save or parquet."""
    return CONTENDERS[writer].callback(out, w1(samples))


def measure(writer: str, samples: int, sleep: float) -> dict[str, Any]:
    import_libraries()
    workload, model, loader = _setup(samples, sleep)
    out = WORK / f"predict-{writer}"
    shutil.rmtree(out, ignore_errors=True)
    contender = "predstore" if writer == NO_COPY else writer
    callbacks = [] if writer == "none" else [_callback(contender, out, samples)]
    trainer = predict_trainer(callbacks)
    copying = _time_the_copy(writer != NO_COPY) if contender == "predstore" else [0.0]
    start = time.perf_counter()
    trainer.predict(model, loader, return_predictions=False)
    seconds = time.perf_counter() - start
    size, files = disk_usage(out) if out.exists() else (0, 0)
    if contender == "predstore":
        import predstore

        assert len(predstore.open(out)) == samples  # a fast wrong answer never wins
    shutil.rmtree(out, ignore_errors=True)
    return {
        "seconds": seconds,
        "samples_per_s": samples / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "disk_mb": size / 1e6,
        "files": files,
        "payload_mb": workload.payload / 1e6,
        "copy_s": copying[0],
    }


def _time_the_copy(copy: bool) -> list[float]:
    """Time spent in PredictionWriter's hand-over of each batch's outputs (in the hook, on the
    loop's thread; with ``copy=False`` without copying them), summed into a one-item list."""
    from predstore.lightning.host_buffers import HostBatch, HostBuffers

    spent = [0.0]
    copy_outputs = HostBuffers.copy

    def timed(self: HostBuffers, outputs: dict[str, Any]) -> HostBatch:
        start = time.perf_counter()
        try:
            if copy:
                return copy_outputs(self, outputs)
            nbytes = sum(
                v.element_size() * v.nelement()
                for v in outputs.values()
                if hasattr(v, "element_size")
            )
            return HostBatch(dict(outputs), nbytes)
        finally:
            spent[0] += time.perf_counter() - start

    HostBuffers.copy = timed  # type: ignore[method-assign]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--run", nargs=3, metavar=("WRITER", "SAMPLES", "SLEEP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.run:
        writer, samples, sleep = args.run
        print(json.dumps(measure(writer, int(samples), float(sleep))))
        return
    warm_page_cache(3 * w1(args.samples).payload >> 20)
    plans = {f"{w}": (w, args.samples, 0.0) for w in (*WRITERS, NO_COPY)}
    plans |= {f"{w}+sleep": (w, args.samples, 0.02) for w in ("none", "predstore")}
    plans |= {f"predstore@{n}": ("predstore", n, 0.0) for n in (10_000, 100_000)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in plans}
    for _ in range(args.reps):
        for name, (writer, samples, sleep) in plans.items():
            runs[name].append(
                run_isolated("benchmarks.predict", ["--run", writer, str(samples), str(sleep)])
            )
            print(f"{name}: {json.dumps(runs[name][-1])}", file=sys.stderr)
    print(report({name: median_of(r) for name, r in runs.items()}, args.samples))


def report(r: dict[str, dict[str, Any]], samples: int) -> str:
    base = r["none"]["seconds"]
    overhead = {w: r[w]["seconds"] - base for w in WRITERS if w != "none"}
    rows = [
        [
            name,
            f"{v['seconds']:.2f}",
            f"{v['samples_per_s']:,.0f}",
            f"{v['seconds'] - (r['none+sleep']['seconds'] if 'sleep' in name else base):+.2f}"
            if not name.startswith("predstore@")
            else "",
            f"{v['peak_rss_mb']:,.0f}",
            f"{v['files']:,}",
        ]
        for name, v in r.items()
    ]
    sleep_added = (r["predstore+sleep"]["seconds"] - r["none+sleep"]["seconds"]) / r["none+sleep"][
        "seconds"
    ]
    rss_growth = r["predstore@100000"]["peak_rss_mb"] / r["predstore@10000"]["peak_rss_mb"] - 1
    lines = [
        f"trainer.predict on W1 ({samples:,} x float32[1000] + pred, prob, name; batch 256), trivial model; medians; {machine()['date']}, {machine()['cpus']} cores",
        "",
        table(rows, ["run", "predict s", "samples/s", "writer overhead s", "peak RSS MB", "files"]),
        "",
        f"- predict with PredictionWriter / without: {r['predstore']['seconds'] / base:.2f}x",
        f"- PredictionWriter overhead vs per-sample torch.save writer: {overhead['torch_save'] / max(overhead['predstore'], 1e-9):.0f}x smaller (bar: >= 50x)",
        f"- PredictionWriter overhead / ParquetWriter callback overhead: {overhead['predstore'] / max(overhead['parquet'], 1e-9):.2f}x (bar: <= 1.5x)",
        f"- with 20 ms per batch of waiting, the writer adds {sleep_added:.1%} to wall time (bar: <= 10%)",
        f"- peak RSS 10,000 -> 100,000 samples: {rss_growth:+.1%} (bar: < 10%)",
        f"- copying each batch's outputs before the hook returns: {r['predstore']['copy_s']:.3f} s "
        f"in the hook (without the copy: {r[NO_COPY]['copy_s']:.3f} s); predict with the copy / "
        f"without: {r['predstore']['seconds'] / r[NO_COPY]['seconds']:.2f}x",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
