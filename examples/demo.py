"""predstore's demo: predict with Lightning into a store, then analyse it.

    bash scripts/demo.sh            # or: python examples/demo.py [--samples 20000] [--out demo-store]

A small classifier predicts 10 classes for a synthetic dataset on 2 CPU
processes (DDP); a PredictionWriter stores its embeddings (Zarr), logits,
predictions and probabilities (Parquet), keyed by each sample's dataset
index and name; and
the demo then reads the store back: accuracy and confidence per class with
polars, a few rows by name, and the store's figures.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import lightning.pytorch as pl
import polars as pl_
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import predstore

CLASSES = 10
FEATURES = 32


class Synthetic(Dataset):
    """Sample i: features drawn around the centre of class i % 10, and a case name."""

    def __init__(self, n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.centres = torch.randn(CLASSES, FEATURES, generator=generator) * 2
        self.noise = torch.randn(n, FEATURES, generator=generator)

    def __len__(self) -> int:
        return len(self.noise)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "x": self.centres[i % CLASSES] + self.noise[i],
            "label": i % CLASSES,
            "case": f"case-{i:06d}",
        }


class PrototypeClassifier(pl.LightningModule):
    """Scores each class by the distance to its centre; embeds inputs with a fixed projection."""

    def __init__(self, centres: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("centres", centres)
        self.embed = nn.Linear(FEATURES, 384)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        logits = -torch.cdist(batch["x"], self.centres)
        prob = logits.softmax(1)
        return {
            "logits": logits,  # 10 floats: a Parquet column (polars Array)
            "embedding": self.embed(batch["x"]),  # 384 floats, 1.5 KB: a Zarr array
            "pred": prob.argmax(1),
            "prob": prob.amax(1),
            "label": batch["label"],
            "case": batch["case"],  # the name of each row (name_key)
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--out", default="demo-store")
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()

    writer = predstore.PredictionWriter(args.out, name_key="case", mode="overwrite")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    start = time.perf_counter()
    dataset = Synthetic(args.samples)
    trainer.predict(
        PrototypeClassifier(dataset.centres),
        DataLoader(dataset, batch_size=256),
        return_predictions=False,
    )
    seconds = time.perf_counter() - start
    if trainer.global_rank != 0:
        return
    store = predstore.open(args.out)
    print(
        f"\nwrote {len(store):,} predictions from {trainer.world_size} ranks in {seconds:.1f} s: {store}\n"
    )
    per_class = (
        store.scan()
        .group_by("label")
        .agg(
            accuracy=(pl_.col("pred") == pl_.col("label")).mean(),
            confidence=pl_.col("prob").mean(),
            samples=pl_.len(),
        )
        .sort("label")
        .collect()
    )
    print("accuracy and confidence per class (polars over the Parquet parts):")
    print(per_class)
    overall = store.scan().select((pl_.col("pred") == pl_.col("label")).mean()).collect().item()
    print(f"overall accuracy: {overall:.3f}")
    embedding = store.read("embedding", names=["case-000007", "case-000042"], as_torch=True)
    print(
        f"embeddings of two cases, read back by name from Zarr: {tuple(embedding.shape)} {embedding.dtype}"
    )
    print(f"coverage: {store.coverage[0]}")
    print(f"\nmore: predstore info {args.out} | predstore verify {args.out}")


if __name__ == "__main__":
    main()
