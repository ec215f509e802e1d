"""What the predict tests share: datasets whose samples are known by index, and small models.

Sample ``i`` of every dataset here has features ``features(i)``, so any row
of a store can be checked against what the model computes for that index.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

FEATURES = 8
CLASSES = 300  # 300 float32 = 1200 bytes per sample: stored in Zarr


def features(index: int) -> torch.Tensor:
    return torch.sin(torch.arange(FEATURES, dtype=torch.float32) * 0.37 + index)


class Samples(Dataset):
    """A map-style dataset of ``n`` samples: features, and a name."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": features(i), "name": f"case-{i:05d}", "index": i}


class StreamOfSamples(IterableDataset):
    """The same samples as an IterableDataset, split across ranks by the dataset itself."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(self.rank, self.n, self.world_size):
            yield {"x": features(i), "name": f"case-{i:05d}", "index": i}


class Teacher(pl.LightningModule):
    """A fixed linear classifier; ``output`` picks what predict_step returns."""

    def __init__(
        self,
        output: str = "dict",
        fail_at: int | None = None,
        sleep: float = 0.0,
        with_index: bool = False,
    ) -> None:
        super().__init__()
        with torch.random.fork_rng():  # fixed weights, without touching the caller's random state
            torch.manual_seed(0)
            self.head = nn.Linear(FEATURES, CLASSES)
        self.output, self.fail_at, self.sleep, self.with_index = output, fail_at, sleep, with_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        if self.fail_at is not None and batch_idx == self.fail_at:
            raise RuntimeError(f"predict_step failed at batch {batch_idx}")
        if self.sleep:
            import time

            time.sleep(self.sleep)
        logits = self(batch["x"])
        if self.output == "tensor":
            return logits
        out: dict[str, Any] = {
            "logits": logits,
            "pred": logits.argmax(1),
            "prob": logits.softmax(1).amax(1),
        }
        if self.output == "bf16":
            out["logits"] = logits.to(torch.bfloat16)
        if self.output == "ragged":
            out["top"] = [logits[i, : int(batch["index"][i]) % 5 + 1] for i in range(len(logits))]
        out["case"] = batch["name"]
        if self.with_index:
            out["index"] = batch["index"]
        return out


def expected_logits(indices: Any) -> torch.Tensor:
    model = Teacher()
    with torch.no_grad():
        return model(torch.stack([features(int(i)) for i in indices]))


def close(got: Any, want: Any) -> bool:
    """Equal up to float rounding (a batched matmul may differ from a single one in the last bit)."""
    import numpy as np

    return bool(
        np.allclose(
            np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), atol=1e-5
        )
    )


def resume_and_check(path: Any, samples: int) -> Any:
    """Predict the samples a killed write left pending with ``mode="resume"``; check every
    index is stored exactly once with the values the model computes. Returns the store."""
    from torch.utils.data import DataLoader

    import predstore

    left = predstore.pending(path, Samples(samples))
    writer = predstore.PredictionWriter(str(path), name_key="case", mode="resume")
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, callbacks=[writer]
    )
    trainer.predict(Teacher(), DataLoader(left, batch_size=8), return_predictions=False)
    store = predstore.open(path)
    assert store.indices().tolist() == list(range(samples))
    assert store.coverage[0].duplicates == 0
    assert close(store.read("logits"), expected_logits(range(samples)))
    return store
