"""CPU time each writer adds to ``trainer.predict``: user plus system time of every thread.

    python -m benchmarks.writer_cpu w3 200000 none,predstore,lance,recipe,parquet,hf_datasets [REPS]

The suite's predicted rows and writer callbacks (``benchmarks/alternatives.py``),
every contender in this one process, one warm-up each, then ``REPS`` (3)
interleaved repetitions; medians. On a shared machine wall times move with
the other jobs' load; the CPU a writer adds moves less (but still moves).
"""

from __future__ import annotations

import resource
import shutil
import statistics
import sys
from typing import Any

from benchmarks.alternatives import CONTENDERS, make_inputs
from benchmarks.common import WORK, w1, w2, w3
from benchmarks.suite import PredictedRows, predict

WORKLOADS = {"w1": w1, "w2": w2, "w3": w3}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    name, samples, tags = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    workload = WORKLOADS[name](samples)
    rows = PredictedRows(make_inputs(workload))
    out = WORK / "writer-cpu"

    def once(tag: str) -> tuple[float, float]:
        shutil.rmtree(out, ignore_errors=True)
        callbacks: list[Any] = [] if tag == "none" else [CONTENDERS[tag].callback(out, workload)]
        cpu = _cpu()
        wall = predict(rows, workload.batch, callbacks)
        cpu = _cpu() - cpu
        shutil.rmtree(out, ignore_errors=True)
        return wall, cpu

    for tag in tags:
        once(tag)
    runs: dict[str, list[tuple[float, float]]] = {tag: [] for tag in tags}
    for _ in range(reps):
        for tag in tags:
            runs[tag].append(once(tag))
    for tag in tags:
        wall = statistics.median(r[0] for r in runs[tag])
        cpu = statistics.median(r[1] for r in runs[tag])
        print(f"{tag}: wall {wall:.3f} s, cpu {cpu:.3f} s")


if __name__ == "__main__":
    main()
