"""What every benchmark shares: workloads, subprocess isolation, timing and reporting.

Each measurement runs in a fresh subprocess, so its peak RSS is its own and
no cache of one contender helps another. A figure is the median of the
repetitions; ratios are always between figures of the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"


@dataclass(frozen=True)
class Workload:
    """A prediction workload: per-sample arrays plus an int pred, a float prob and a string name."""

    name: str
    samples: int
    batch: int
    arrays: dict[str, tuple[tuple[int, ...], str]]

    @property
    def payload_per_sample(self) -> int:
        arrays = sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in self.arrays.values())
        return arrays + 8 + 4 + len("sample-0000000")

    @property
    def payload(self) -> int:
        return self.payload_per_sample * self.samples


def w1(samples: int = 50_000) -> Workload:
    return Workload("W1 classify", samples, 256, {"logits": ((1000,), "float32")})


def w2(samples: int = 400) -> Workload:
    return Workload(
        "W2 segment",
        samples,
        8,
        {"mask": ((64, 64, 64), "uint8"), "probs": ((2, 64, 64, 64), "float16")},
    )


def w3(samples: int = 200_000) -> Workload:
    return Workload("W3 embed", samples, 1024, {"embedding": ((384,), "float16")})


def batches(workload: Workload, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The workload's batches as numpy, deterministic; arrays look like real predictions."""
    rng = np.random.default_rng(seed)
    for start in range(0, workload.samples, workload.batch):
        n = min(workload.batch, workload.samples - start)
        out: dict[str, Any] = {"index": np.arange(start, start + n)}
        for key, (shape, dtype) in workload.arrays.items():
            if np.dtype(dtype).kind == "u":  # masks: a few labelled blobs, mostly background
                values = np.zeros((n, *shape), dtype)
                values[:, : shape[0] // 4, : shape[1] // 3] = 1 + (np.arange(n) % 3).reshape(
                    -1, *[1] * len(shape)
                )
            elif key == "probs":  # a segmentation model's class probabilities: smooth, in [0, 1]
                values = _probabilities(out["mask"], shape[0], rng).astype(dtype)
            else:  # logits and embeddings: noise, which compresses as badly as real ones
                values = rng.standard_normal((n, *shape), dtype=np.float32).astype(dtype)
            out[key] = values
        first = next(iter(workload.arrays))
        flat = out[first].reshape(n, -1).astype(np.float32)
        out["pred"] = flat.argmax(1).astype(np.int64)
        out["prob"] = flat.max(1).astype(np.float32)
        out["name"] = [f"sample-{i:07d}" for i in range(start, start + n)]
        yield out


def _probabilities(mask: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Per-voxel class probabilities a segmentation network could give for ``mask``.

    Foreground or background with a confidence that drifts smoothly across
    the volume (a network's output is smooth, not noise), as a softmax over
    ``classes`` channels (the first is background).
    """
    n, *spatial = mask.shape
    grids = np.meshgrid(
        *[np.linspace(0, np.pi, d, dtype=np.float32) for d in spatial], indexing="ij"
    )
    phase = rng.uniform(0, np.pi, (n, len(spatial))).astype(np.float32)
    drift = sum(
        np.sin(g[None] + phase[:, i].reshape(-1, *[1] * len(spatial))) for i, g in enumerate(grids)
    )
    foreground = np.where(mask > 0, 5.0, -5.0).astype(np.float32) + drift
    logits = np.zeros((n, classes, *spatial), np.float32)
    logits[:, 1] = foreground
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_usage(path: Path) -> tuple[int, int]:
    """Bytes and number of files below ``path``."""
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


def allocated_bytes(path: Path) -> int:
    """Bytes the filesystem allocated for the files below ``path`` (small files round up to blocks)."""
    return sum(
        os.stat(os.path.join(root, name)).st_blocks * 512
        for root, _, names in os.walk(path)
        for name in names
    )


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def rss_mb() -> float:
    """This process's resident set size now."""
    return _status_mb("VmRSS:")


def reset_peak_rss() -> float:
    """Restart this process's peak-RSS count (Linux ``clear_refs``) and return the RSS now.

    A forked child inherits its parent's high-water mark; after the reset,
    ``peak_rss_since_reset() - (what this returned)`` is what the child added.
    """
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return rss_mb()


def peak_rss_since_reset() -> float:
    return _status_mb("VmHWM:")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def warm_page_cache(megabytes: int, where: Path = WORK) -> None:
    """Write and delete ``megabytes`` of scratch files.

    On a virtual machine the first pages the guest ever uses are far slower
    to fill than recycled ones; without this, whichever contender runs first
    pays for it.
    """
    where.mkdir(parents=True, exist_ok=True)
    block = os.urandom(64 << 20)
    paths = [where / f"warm-{i}" for i in range(max(1, megabytes // 64))]
    for path in paths:
        path.write_bytes(block)
    for path in paths:
        path.unlink()


def import_libraries() -> None:
    """Import what every contender uses before any timing starts (pyarrow imports pandas lazily)."""
    import pandas  # noqa: F401
    import pyarrow as pa

    pa.array(["warm"])


def predict_trainer(callbacks: list[Any]) -> Any:
    """A one-process CPU ``lightning.pytorch.Trainer`` that predicts and prints nothing of its own."""
    import lightning.pytorch as pl

    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def run_isolated(module: str, args: list[str]) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON it prints last."""
    os.sync()  # start every measurement with no dirty pages of the previous one
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (a killed suite leaves nothing)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_forked(fn: Callable[..., Any], *args: Any, timeout: float = 1800) -> dict[str, Any]:
    """Run ``fn(*args)`` in a forked child and return the dict it returns.

    The child starts from this process as it is, libraries imported and
    inputs generated (importing torch and Lightning takes 4-6 s per process
    on a small machine), but keeps its own allocations, caches, threads and
    peak RSS. This process must not have run torch operations (its OpenMP
    thread pool does not survive a fork): leave the work to the children. An exception in the child comes back as ``{"error": ...}`` with
    its type and traceback; a child that outlives ``timeout`` seconds is
    killed and reported the same way.
    """
    import pickle
    import select
    import signal
    import traceback

    os.sync()  # start every measurement with no dirty pages of the previous one
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.setpgid(0, 0)  # its own process group: whatever it starts ends with it
            _die_with_parent()
            os.close(read_end)
            try:
                result: dict[str, Any] = fn(*args)
            except BaseException as error:
                result = {
                    "error": f"{type(error).__name__}: {error}",
                    "error_type": type(error).__name__,
                    "traceback": traceback.format_exc(),
                }
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(result, pipe)
        except BaseException:
            status = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + timeout
    with os.fdopen(read_end, "rb") as pipe:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pipe], [], [], left)[0]:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return {"error": f"timed out after {timeout:.0f} s", "error_type": "Timeout"}
            chunk = os.read(pipe.fileno(), 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # workers the child left behind
    if not chunks:
        return {"error": f"the child died (wait status {status})", "error_type": "Died"}
    return pickle.loads(b"".join(chunks))  # type: ignore[no-any-return]


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over repetitions (non-numeric figures from the first run)."""
    result = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = statistics.median(r[key] for r in runs)
    return result


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for name in (
        "predstore",
        "torch",
        "lightning",
        "pyarrow",
        "zarr",
        "numcodecs",
        "polars",
        "pandas",
        "numpy",
        "pylance",
        "datasets",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
