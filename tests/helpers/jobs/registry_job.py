"""A small training job with a RegistryLogger, run as a real subprocess by the tests.

    python tests/helpers/jobs/registry_job.py ROOT --max-steps N [--sleep S] [--ckpt PATH] [--late-from STEP]

It logs ``train_loss`` every step and, from ``--late-from`` on, a ``late``
metric (a column that appears mid-run). A checkpoint ``last.ckpt`` is written
every two steps into ``ROOT/exp/job/checkpoints``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from predstore.lightning.registry_logger import RegistryLogger


class Job(pl.LightningModule):
    def __init__(self, sleep: float = 0.0, late_from: int = -1, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        time.sleep(self.hparams.sleep)
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        if 0 <= self.hparams.late_from <= self.global_step:
            self.log("late", float(self.global_step))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--late-from", type=int, default=-1)
    args = parser.parse_args()
    logger = RegistryLogger(
        args.root,
        name="exp",
        version="job",
        tags=["preemptible"],
        save_interval=0.0,
        heartbeat_interval=0.2,
    )
    checkpoints = ModelCheckpoint(
        dirpath=f"{args.root}/exp/job/checkpoints", every_n_train_steps=2, save_last=True
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.max_steps,
        logger=logger,
        callbacks=[checkpoints],
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Job(sleep=args.sleep, late_from=args.late_from)
    trainer.fit(model, ckpt_path=args.ckpt)


if __name__ == "__main__":
    main()
