"""Reading stored predictions back for training: predstore's datasets against one torch.save file per sample.

    python -m benchmarks.dataset_load [--reps 3] [--workloads w1,w3,w3z] [--keep]

For W1 (50,000 x float32[1000] logits) and W3 (200,000 x float16[384]
embeddings), each with pred, prob and name, one epoch is read in random
order through ``DataLoader(batch_size=256, shuffle=True, num_workers=2)``:

- ``files``: the samples as one ``torch.save`` file each (the common way);
- ``map``: ``PredictionDataset``, default options;
- ``map_tuned``: ``PredictionDataset(preload=True)`` with
  ``collate_fn=PredictionDataset.collate``;

and one pass of ``SequentialPredictionDataset(batch_size=B, shuffle=True)`` with the
workload's own batch size B (256 for W1, 1024 for W3):

- ``sequential``: iterated directly (decoding runs on threads of its own),
  a first pass timed as the others, then three more passes in the same
  process, each timed alone (``later``: their median);
- ``sequential_workers``: through ``DataLoader(batch_size=None, num_workers=2)``.

W3's embeddings (float16[384]) go to Zarr by default (more than 32
elements); ``w3z`` forces them there (``keys={"embedding": "zarr"}``),
whatever the default, to show that storage's reading cost.

The data is prepared once (``--keep`` reuses it) and stays in the page
cache, so what is measured is the reading path's CPU cost. Each
measurement runs in its own subprocess; repetitions are interleaved and
figures are medians. Times run from opening the dataset (``preload``
decodes there) to the last batch, worker start-up included.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    WORK,
    Workload,
    batches,
    import_libraries,
    machine,
    median_of,
    run_isolated,
    table,
    w1,
    w3,
    warm_page_cache,
)

CONTENDERS = ("files", "map", "map_tuned", "sequential", "sequential_workers")
WORKLOADS = {"w1": w1, "w3": w3, "w3z": w3}
ZARR = {"w3z": {"embedding": "zarr"}}
"""Workloads whose keys are forced to a storage."""
BATCH = 256
WORKERS = 2
DATA = WORK / "dataset_load"


def store_path(name: str) -> Path:
    return DATA / f"{name}.pstore"


def files_path(name: str) -> Path:
    return DATA / f"{name.rstrip('z')}.files"  # w3z shares w3's files


# -- preparing the data, once ----------------------------------------------------------------


def prepare(name: str, workload: Workload) -> None:
    import torch

    import predstore

    stamp = DATA / f"{name}.done"
    if stamp.exists():
        return
    shutil.rmtree(store_path(name), ignore_errors=True)
    files = not files_path(name).exists()
    files_path(name).mkdir(parents=True, exist_ok=True)
    with predstore.StoreWriter(store_path(name), keys=ZARR.get(name)) as writer:
        for b in batches(workload):
            outputs = {k: v for k, v in b.items() if k not in ("index", "name")}
            writer.write(outputs, b["index"], names=b["name"])
            tensors = {k: torch.from_numpy(v) for k, v in outputs.items()}
            for i, index in enumerate(b["index"].tolist() if files else []):
                sample = {k: t[i].clone() for k, t in tensors.items()}
                sample |= {"index": index, "name": b["name"][i]}
                torch.save(sample, files_path(name) / f"{index}.pt")
    stamp.touch()


# -- one measurement, in its own process --------------------------------------------------


class FilesDataset:
    """One torch.save file per sample, loaded in ``__getitem__``: the common way."""

    def __init__(self, root: Path, samples: int) -> None:
        self.root, self.samples = root, samples

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return torch.load(self.root / f"{i}.pt")  # type: ignore[no-any-return]


def measure(contender: str, name: str) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    import predstore

    import_libraries()
    predstore.PredictionDataset, predstore.SequentialPredictionDataset  # noqa: B018  (imported before timing)
    workload = WORKLOADS[name]()
    start = time.perf_counter()
    loader: Any
    if contender == "files":
        files = FilesDataset(files_path(name), workload.samples)
        loader = DataLoader(files, batch_size=BATCH, shuffle=True, num_workers=WORKERS)  # type: ignore[arg-type]
    elif contender.startswith("map"):
        tuned = contender == "map_tuned"
        dataset = predstore.PredictionDataset(store_path(name), preload=tuned)
        collate = {"collate_fn": predstore.PredictionDataset.collate} if tuned else {}
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=WORKERS, **collate)
    else:
        passes = predstore.SequentialPredictionDataset(
            store_path(name), batch_size=workload.batch, shuffle=True
        )
        workers = WORKERS if contender == "sequential_workers" else 0
        loader = DataLoader(passes, batch_size=None, num_workers=workers) if workers else passes
    opened = time.perf_counter() - start
    seen, last = 0, None
    for batch in loader:
        seen += len(batch["index"])
        last = batch
    seconds = time.perf_counter() - start
    assert seen == workload.samples, (seen, workload.samples)
    assert last is not None
    _check(workload, last)
    result = {
        "open_s": opened,
        "total_s": seconds,
        "samples_per_s": seen / seconds,
        "payload_gb_per_s": seen * workload.payload_per_sample / seconds / 1e9,
    }
    if contender == "sequential":  # and the passes after the first, in the same process
        later = [_one_pass(loader) for _ in range(LATER_PASSES)]
        result["later_gb_per_s"] = workload.payload / sorted(later)[len(later) // 2] / 1e9
    return result


LATER_PASSES = 3


def _one_pass(loader: Any) -> float:
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def _check(workload: Workload, batch: dict[str, Any]) -> None:
    """The last batch holds exactly what was written for its indices."""
    index = batch["index"].numpy()
    key = next(iter(workload.arrays))
    expected = np.concatenate([b[key] for b in batches(workload)])[index]
    assert np.array_equal(batch[key].numpy(), expected), "values differ from what was written"
    assert list(batch["name"]) == [f"sample-{i:07d}" for i in index.tolist()]


# -- the parent: prepare, interleave, report ----------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workloads", default="w1,w3,w3z")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--keep", action="store_true", help="reuse data prepared by a former run")
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--workload", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(measure(args.run, args.workload)))
        return
    names = args.workloads.split(",")
    contenders = args.contenders.split(",")
    if not args.keep:
        shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"preparing {name}...", file=sys.stderr)
        prepare(name, WORKLOADS[name]())
    warm_page_cache(2 * sum(WORKLOADS[n]().payload for n in names) >> 20)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(args.reps):  # interleaved, so drifts of the machine hit every contender alike
        for name in names:
            for contender in contenders:
                if name in ZARR and contender == "files":
                    continue  # the same files as the workload's own
                result = run_isolated(
                    "benchmarks.dataset_load", ["--run", contender, "--workload", name]
                )
                runs.setdefault((name, contender), []).append(result)
                print(f"{name} {contender}: {json.dumps(result)}", file=sys.stderr)
    print(report({k: median_of(v) for k, v in runs.items()}, names, contenders))


def report(
    results: dict[tuple[str, str], dict[str, Any]], names: list[str], contenders: list[str]
) -> str:
    info = machine()
    lines = [
        f"From opening the dataset to the last batch of one epoch (map-style: batch {BATCH}, "
        "sequential: the workload's batch), medians; "
        f"{info['date']}, {info['cpus']} cores, torch {info['versions'].get('torch')}",
        "",
    ]
    rows = []
    for name in names:
        workload = WORKLOADS[name]()
        label = f"{workload.name}{' (Zarr)' if name in ZARR else ''}"
        for contender in contenders:
            r = results.get((name, contender))
            if r is None:
                continue
            rows.append(
                [
                    f"{label}, {workload.samples:,} samples",
                    contender,
                    f"{r['open_s']:.2f}",
                    f"{r['total_s']:.2f}",
                    f"{r['samples_per_s']:,.0f}",
                    f"{r['payload_gb_per_s']:.2f}",
                ]
            )
    header = ["workload", "contender", "open s", "total s", "samples/s", "payload GB/s"]
    lines += [table(rows, header), ""]
    for name in names:
        label = f"{WORKLOADS[name]().name}{' (Zarr)' if name in ZARR else ''}"
        files = results.get((name, "files")) or results.get((name.rstrip("z"), "files"))
        for contender in ("map", "map_tuned"):
            r = results.get((name, contender))
            if r is not None and files is not None:
                ratio = r["samples_per_s"] / files["samples_per_s"]
                lines.append(
                    f"- {label}: {contender} / per-sample files: {ratio:.1f}x (bar: >= 10x)"
                )
        for contender in ("sequential", "sequential_workers"):
            r = results.get((name, contender))
            if r is not None:
                lines.append(
                    f"- {label}: {contender}: {r['payload_gb_per_s']:.2f} GB/s of decoded payload "
                    "on a first pass in a fresh process (bar: >= 1 GB/s)"
                )
            if r is not None and "later_gb_per_s" in r:
                lines.append(
                    f"- {label}: {contender}: {r['later_gb_per_s']:.2f} GB/s on the passes after "
                    f"the first (median of {LATER_PASSES}; bar: >= 1.5 GB/s)"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
