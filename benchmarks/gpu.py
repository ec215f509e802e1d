"""What PredictionWriter costs when the outputs live on a GPU: trainer.predict on CUDA.

    python -m benchmarks.gpu [--samples 50000] [--reps 3] [--work-ms 5]

A model on the GPU turns each batch of 256 samples into W1's outputs
(float32[1000] logits, an int64 pred, a float32 prob), after ``--work-ms``
milliseconds of matrix products on the device (a stand-in for a real
network's forward pass). Three runs, each in a fresh process, medians of
``--reps``:

- ``none``: no writer (the loop's own time);
- ``predstore``: ``PredictionWriter``: non-blocking copies into pinned host
  buffers, an event the writer thread waits on, buffers reused once written;
- ``recipe``: Lightning's documented ``BasePredictionWriter`` with one
  ``torch.save`` per batch of the outputs moved with ``.cpu()`` (a copy that
  makes the loop wait for the device).

Overhead = the run's time - the time of ``none``. On a machine without a
CUDA device the script says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import WORK, machine, median_of, peak_rss_mb, run_isolated, table

WRITERS = ("none", "predstore", "recipe")
BATCH, WIDTH = 256, 1000


def _model(work_ms: float) -> Any:
    import lightning.pytorch as pl
    import torch

    class OnDevice(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(WIDTH, WIDTH) / WIDTH**0.5)
            self.rounds = 0

        def on_predict_start(self) -> None:  # how many products take work_ms on this device
            x = torch.randn(BATCH, WIDTH, device=self.device)
            torch.cuda.synchronize()
            start, n = time.perf_counter(), 20
            for _ in range(n):
                x = torch.tanh(x @ self.weight)
            torch.cuda.synchronize()
            self.rounds = max(1, round(work_ms / 1e3 / ((time.perf_counter() - start) / n)))

        def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
            (index,) = batch
            x = torch.randn(len(index), WIDTH, device=self.device)
            for _ in range(self.rounds):
                x = torch.tanh(x @ self.weight)
            prob, pred = x.softmax(1).max(1)
            return {"logits": x, "pred": pred, "prob": prob, "i": index}

    return OnDevice()


def _callback(writer: str, out: Path) -> list[Any]:
    import torch
    from lightning.pytorch.callbacks import BasePredictionWriter

    import predstore

    if writer == "predstore":
        return [predstore.PredictionWriter(str(out), index_key="i")]
    if writer == "recipe":

        class PerBatch(BasePredictionWriter):
            def write_on_batch_end(  # type: ignore[no-untyped-def]
                self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dl_idx
            ):
                moved = {k: v.cpu() for k, v in prediction.items()}
                torch.save(moved, out / f"batch-{batch_idx:06d}.pt")

        out.mkdir(parents=True)
        return [PerBatch(write_interval="batch")]
    return []


def measure(writer: str, samples: int, work_ms: float) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    out = WORK / f"gpu-{writer}"
    shutil.rmtree(out, ignore_errors=True)
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=_callback(writer, out),
    )
    loader = DataLoader(TensorDataset(torch.arange(samples)), batch_size=BATCH)
    model = _model(work_ms)
    start = time.perf_counter()
    trainer.predict(model, loader, return_predictions=False)
    seconds = time.perf_counter() - start
    if writer == "predstore":
        import predstore

        store = predstore.open(out)
        assert len(store) == samples and store.read("logits").shape == (samples, WIDTH)
    shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work-ms", type=float, default=5.0)
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(
            "benchmarks.gpu measures PredictionWriter with outputs on a CUDA device, and this "
            f"machine has none (torch {torch.__version__}, torch.cuda.is_available() is False). "
            "Run it on a machine with an NVIDIA GPU and a CUDA build of torch.",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.run:
        writer, samples, work_ms = args.run
        print(json.dumps(measure(writer, int(samples), float(work_ms))))
        return
    runs: dict[str, list[dict[str, Any]]] = {w: [] for w in WRITERS}
    for _ in range(args.reps):
        for writer in WRITERS:
            figures = [writer, str(args.samples), str(args.work_ms)]
            runs[writer].append(run_isolated("benchmarks.gpu", ["--run", *figures]))
            print(f"{writer}: {json.dumps(runs[writer][-1])}", file=sys.stderr)
    r = {w: median_of(v) for w, v in runs.items()}
    base = r["none"]["seconds"]
    rows = [
        [
            w,
            f"{r[w]['seconds']:.2f}",
            "" if w == "none" else f"{r[w]['seconds'] - base:.2f}",
            f"{args.samples / r[w]['seconds']:,.0f}",
            f"{r[w]['peak_rss_mb']:.0f}",
        ]
        for w in WRITERS
    ]
    print(json.dumps({"machine": machine(), "device": torch.cuda.get_device_name()}))
    print(table(rows, ["writer", "predict s", "overhead s", "samples/s", "peak RSS MB"]))


if __name__ == "__main__":
    main()
