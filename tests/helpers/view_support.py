"""Small stores and a small registry for the viewer's tests, written with predstore's writers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

import predstore
from predstore.registry import RunWriter

ROWS = 60
CLASSES = 4
TOKEN = "test-token"

P = TypeVar("P", str, Path)


def labels(index: np.ndarray) -> np.ndarray:
    return (index % CLASSES).astype(np.int64)


def predictions(index: np.ndarray, shift: int) -> np.ndarray:
    """Right on most rows; every ``shift``-th row is off by one class."""
    wrong = (index % shift) == 0
    return np.where(wrong, (index + 1) % CLASSES, index % CLASSES).astype(np.int64)


def write_store(path: P, shift: int) -> P:
    """ROWS samples: pred, label, prob, a name, logits, an RGB image, a 2-D heatmap, a volume."""
    rng = np.random.default_rng(shift)
    with predstore.StoreWriter(path, expected={0: ROWS}) as writer:
        for start in range(0, ROWS, 20):
            index = np.arange(start, start + 20)
            writer.write(
                {
                    "pred": predictions(index, shift),
                    "label": labels(index),
                    "prob": rng.random(20).astype(np.float32),
                    "logits": rng.standard_normal((20, 100)).astype(np.float32),
                    "image": rng.random((20, 3, 16, 16)).astype(np.float32),
                    "heat": (rng.standard_normal((20, 12, 12)) * 5).astype(np.float32),
                    "volume": rng.random((20, 5, 8, 8)) > 0.5,
                },
                index.tolist(),
                names=[f"case-{i:03d}" for i in index],
            )
    return path


@dataclass(frozen=True)
class Data:
    a: Path
    b: Path
    runs: Path
    run_id: str


def make_data(root: Path) -> Data:
    """Two stores that disagree on some rows, and a registry whose one run links the first."""
    a = write_store(root / "a.pstore", shift=5)
    b = write_store(root / "b.pstore", shift=3)
    runs = root / "runs"
    run = RunWriter(runs / "resnet" / "v0", tags=["baseline"], save_interval=0)
    run.open()
    run.log_hparams({"lr": 0.1, "depth": 18})
    for step in range(10):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
        run.log_image("val/sample", np.full((8, 8), step * 20, np.uint8), step=step)
    manifest = predstore.open(a).manifest
    run.register_store(
        str(a),
        rows=manifest.rows,
        committed_at=manifest.committed_at,
        write_id=manifest.writes[0].write_id,
    )
    run.save(force=True)
    run.finalize("completed")
    return Data(a, b, runs, run.run_id)
