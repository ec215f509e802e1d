"""A two-rank DDP fit that reads a store through both datasets; run by test_lightning_datasets.py.

    python tests/helpers/jobs/ddp_dataset_job.py STORE OUT

Each training batch holds one batch of ``PredictionDataset`` (Lightning
gives its DataLoader the usual DistributedSampler) and one of
``SequentialPredictionDataset`` (which finds its rank through
torch.distributed), both read by a forked DataLoader worker. Every rank
checks each batch's values against the store, trains a linear layer on
them, and writes the indices it was given to ``OUT/rank-<r>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.nn import functional as F
from torch.utils.data import DataLoader

import predstore


class Reader(pl.LightningModule):
    def __init__(self, store: str, out: str) -> None:
        super().__init__()
        self.store, self.out = store, Path(out)
        self.net = torch.nn.Linear(300, 7)
        self.seen: dict[str, list[int]] = {"map": [], "sequential": []}
        self.steps = 0

    def train_dataloader(self) -> CombinedLoader:
        rows = predstore.PredictionDataset(self.store, ["logits", "pred"])
        passes = predstore.SequentialPredictionDataset(
            self.store, ["logits", "pred"], batch_size=4, shuffle=True, seed=0
        )
        return CombinedLoader(
            {
                "map": DataLoader(rows, batch_size=4, shuffle=True, num_workers=1),
                "sequential": DataLoader(passes, batch_size=None, num_workers=1),
            },
            mode="max_size",
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        store = predstore.open(self.store)
        loss = torch.zeros(())
        for name, part in batch.items():
            if part is None:  # this loader is done (max_size mode)
                continue
            indices = part["index"].tolist()
            expected = torch.from_numpy(store.read("logits", indices))
            if not torch.equal(part["logits"], expected):
                raise AssertionError(f"rank {self.global_rank}: {name} logits differ at {indices}")
            self.seen[name] += indices
            loss = loss + F.cross_entropy(self.net(part["logits"]), part["pred"])
        self.steps += 1
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        record = {**self.seen, "steps": self.steps, "world": world}
        (self.out / f"rank-{self.global_rank}.json").write_text(json.dumps(record))


def main() -> None:
    store, out = sys.argv[1], sys.argv[2]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
    )
    trainer.fit(Reader(store, out))


if __name__ == "__main__":
    main()
