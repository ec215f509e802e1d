"""The benchmark suite: predstore against the ways people save predictions today, in one run.

For each workload (W1 classify, W2 segment, W3 embed) and each contender
(``benchmarks.alternatives``), one repetition is one forked process that

1. runs ``trainer.predict`` with a trivial model and the contender's writer
   callback, timed, with the RSS it added at its peak;
2. counts bytes and files on disk and checks the output: row count, and a
   sample of rows equal to what the model predicted;
3. loads every row through ``DataLoader(num_workers=2, shuffle=True)`` over
   the contender's map-style Dataset, timed from creating the Dataset to the
   last batch, and checks that each index came exactly once and the last
   batch's values (predstore twice: with the default collate, then with
   ``collate_fn=PredictionDataset.collate``);
4. reads ``index``, ``pred`` and ``prob`` back into polars or pandas and
   computes accuracy and a group-by, timed (the fastest of up to five runs
   within one second), and checks the answer.

A measurement whose check fails records the failure and no figure; the
contender is not timed again. Repetitions are interleaved (every contender,
then again), figures are medians, and "none" (the same predict without any
writer) is measured in the same rounds, so a writer's overhead is its
median predict time minus none's.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.alternatives import (
    CONTENDERS,
    CheckError,
    Contender,
    Inputs,
    analyse,
    check_analysis,
    check_batch,
    check_dataset,
    make_inputs,
    predstore_dataset_missing,
    quiet_lightning,
)
from benchmarks.common import (
    WORK,
    Workload,
    allocated_bytes,
    disk_usage,
    import_libraries,
    median_of,
    peak_rss_since_reset,
    predict_trainer,
    reset_peak_rss,
    run_forked,
    timed,
    w1,
    w2,
    w3,
    warm_page_cache,
)

WORKLOADS = {"w1": w1, "w2": w2, "w3": w3}
LOADER_WORKERS = 2

# The issue's workloads are 50,000, 400 and 200,000 samples. By default the suite runs a
# fifth, half and a quarter of them, so that all of it, three repetitions, fits in ten
# minutes on two cores; `--w1 50000 --w2 400 --w3 200000` measures the issue's sizes.
DEFAULT_SIZES = {"w1": 10_000, "w2": 200, "w3": 50_000}
ISSUE_SIZES = {"w1": 50_000, "w2": 400, "w3": 200_000}

# Pairs that take minutes per repetition (on 2 cores, at the issue's W3: 200,000 loose
# files written, loaded and read back, 4.5 minutes; 77 million numbers as text, 3 minutes);
# they run with --full.
SLOW = {
    ("w3", "torch_save"): "one file per sample, written, loaded and read back",
    ("w3", "async_files"): "one file per sample, written, loaded and read back",
    ("w3", "csv"): "every embedding value as text",
}


@dataclass
class Settings:
    sizes: dict[str, int] = field(default_factory=dict)  # samples per workload key
    workloads: list[str] = field(default_factory=lambda: list(WORKLOADS))
    contenders: list[str] = field(default_factory=lambda: list(CONTENDERS))
    reps: int = 3
    full: bool = False
    work: Path = WORK / "suite"
    timeout: float = 1800.0
    extra: dict[str, Contender] = field(default_factory=dict)  # more contenders (tests)

    def workload(self, key: str) -> Workload:
        return WORKLOADS[key](self.sizes.get(key, DEFAULT_SIZES[key]))

    def contender(self, key: str) -> Contender:
        return self.extra.get(key) or CONTENDERS[key]


# -- trainer.predict with a trivial model -----------------------------------------------------


class PredictedRows:
    """The model's outputs, precomputed; ``__getitems__`` hands out a whole batch (no collate)."""

    def __init__(self, inputs: Inputs) -> None:
        import torch

        self.names = inputs.columns["name"]
        self.tensors = {k: torch.from_numpy(v) for k, v in inputs.columns.items() if k != "name"}

    def __len__(self) -> int:
        return len(self.names)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        import torch

        at = torch.as_tensor(indices)
        batch: dict[str, Any] = {k: t[at] for k, t in self.tensors.items()}
        batch["name"] = self.names[indices].tolist()
        return batch


def trivial_model() -> Any:
    import lightning.pytorch as pl

    class Trivial(pl.LightningModule):
        """Predicts what the dataset holds: the writer is all that costs."""

        def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
            return batch

    return Trivial()


def predict(rows: Any, batch_size: int, callbacks: list[Any]) -> float:
    """Seconds that ``trainer.predict`` takes over ``rows`` with ``callbacks``."""
    from torch.utils.data import DataLoader

    with quiet_lightning():
        trainer = predict_trainer(callbacks)
        loader = DataLoader(rows, batch_size=batch_size, collate_fn=lambda b: b)
        start = time.perf_counter()
        trainer.predict(trivial_model(), loader, return_predictions=False)
        return time.perf_counter() - start


# -- one repetition of one contender, in its own process --------------------------------------


def measure(contender: Contender | None, inputs: Inputs, out: Path) -> dict[str, Any]:
    """Write, check, load and analyse once; ``contender=None`` is predict without a writer."""
    workload = inputs.workload
    shutil.rmtree(out, ignore_errors=True)
    rows = PredictedRows(inputs)
    callbacks = [] if contender is None else [contender.callback(out, workload)]
    start_rss = reset_peak_rss()
    seconds = predict(rows, workload.batch, callbacks)
    result: dict[str, Any] = {
        "predict_s": seconds,
        "rss_added_mb": peak_rss_since_reset() - start_rss,
    }
    if contender is None:
        return result
    try:
        size, files = disk_usage(out)
        result |= {
            "disk_mb": size / 1e6,
            "allocated_mb": allocated_bytes(out) / 1e6,
            "files": files,
        }
        check_dataset(contender.dataset(out, workload), inputs)
        unavailable = predstore_dataset_missing() if contender.key == "predstore" else None
        if unavailable is None:
            result |= load(contender, inputs, out)
        if unavailable is None and contender.key == "predstore":
            import predstore

            tuned = load(contender, inputs, out, collate_fn=predstore.PredictionDataset.collate)
            result |= {f"load_collate_{k.removeprefix('load_')}": v for k, v in tuned.items()}
        result |= analysis(contender, inputs, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return result


def load(contender: Contender, inputs: Inputs, out: Path, collate_fn: Any = None) -> dict[str, Any]:
    """One shuffled epoch through DataLoader(num_workers=2), from creating the Dataset on
    (with the default collate unless ``collate_fn`` is given)."""
    import torch
    from torch.utils.data import DataLoader

    workload = inputs.workload
    seen = np.zeros(inputs.samples, dtype=np.int64)
    last = None
    start = time.perf_counter()
    dataset = contender.dataset(out, workload)
    loader = DataLoader(
        dataset,
        batch_size=workload.batch,
        shuffle=True,
        num_workers=LOADER_WORKERS,
        multiprocessing_context=contender.loader_context,
        generator=torch.Generator().manual_seed(0),
        collate_fn=collate_fn,
    )
    batches = iter(loader)
    try:
        for batch in batches:
            np.add.at(seen, np.asarray(batch["index"]), 1)
            last = batch
    finally:  # workers must not outlive a failed check (the child ends with os._exit)
        getattr(batches, "_shutdown_workers", lambda: None)()
    seconds = time.perf_counter() - start
    if last is None or not (seen == 1).all():
        raise CheckError(
            f"loading: {int((seen == 0).sum()):,} indices never came, "
            f"{int((seen > 1).sum()):,} came more than once"
        )
    check_batch(last, inputs)
    return {"load_s": seconds, "load_samples_per_s": inputs.samples / seconds}


def analysis(contender: Contender, inputs: Inputs, out: Path) -> dict[str, Any]:
    """Accuracy and a group-by from the contender's files: the fastest of up to 5 runs in 1 s."""
    times: list[float] = []
    while not times or (sum(times) < 1.0 and len(times) < 5):
        seconds, result = timed(lambda: analyse(contender.frame(out), inputs.labels))
        check_analysis(result, inputs)
        times.append(seconds)
    return {"analysis_s": min(times), "accuracy": result["accuracy"]}


# -- the whole suite --------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(settings: Settings) -> dict[str, Any]:
    """Every workload, every contender, ``reps`` interleaved rounds: the results as one dict."""
    import_libraries()
    import lightning.pytorch  # noqa: F401  (imported once here, not in every forked child)

    import predstore

    predstore.PredictionWriter  # noqa: B018  (the code every repetition runs, loaded once)
    if predstore_dataset_missing() is None:
        predstore.PredictionDataset  # noqa: B018

    workloads = {key: settings.workload(key) for key in settings.workloads}
    warm_page_cache(2 * max(w.payload for w in workloads.values()) >> 20, settings.work)
    results: dict[str, Any] = {}
    for key, workload in workloads.items():
        log(f"{workload.name}: {workload.samples:,} samples, {workload.payload / 1e6:,.0f} MB")
        inputs = make_inputs(workload)
        entries: dict[str, dict[str, Any]] = {"none": {"runs": []}}
        for name in settings.contenders:
            reason = settings.contender(name).skip_reason(workload)
            if reason is None and not settings.full and (key, name) in SLOW:
                reason = f"slow ({SLOW[(key, name)]}): run with --full"
            entries[name] = {"runs": []} if reason is None else {"skipped": reason}
        for rep in range(settings.reps):
            for name, entry in entries.items():
                if "runs" not in entry:
                    continue
                contender = None if name == "none" else settings.contender(name)
                out = settings.work / f"{key}-{name}"
                result = run_forked(measure, contender, inputs, out, timeout=settings.timeout)
                shutil.rmtree(out, ignore_errors=True)
                if "error" in result:
                    log(
                        f"  {name} rep {rep + 1}: FAILED {result['error']}\n{result.get('traceback', '')}"
                    )
                    entries[name] = {
                        "failed": result["error"],
                        "check": result["error_type"] == "CheckError",
                    }
                    continue
                entry["runs"].append(result)
                log(
                    f"  {name} rep {rep + 1}: "
                    + ", ".join(f"{k} {v:.4g}" for k, v in result.items())
                )
        for entry in entries.values():
            if entry.get("runs"):
                entry["median"] = median_of(entry["runs"])
        if "predstore" in entries and "runs" in entries["predstore"]:
            missing = predstore_dataset_missing()
            if missing:
                entries["predstore"]["load_skipped"] = missing
        results[key] = {
            "name": workload.name,
            "samples": workload.samples,
            "batch": workload.batch,
            "payload_mb": workload.payload / 1e6,
            "arrays": {k: [list(s), d] for k, (s, d) in workload.arrays.items()},
            "contenders": entries,
        }
        del inputs
    return results
