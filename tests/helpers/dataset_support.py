"""Helpers for the dataset tests: a store with every kind of key, and its expected values.

Everything here is importable by name, so spawned DataLoader workers can
unpickle the transforms and datasets the tests hand them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import torch
from torch.utils.data import Dataset

import predstore
from predstore.format import layout

N = 90
"""Rows of the test store: indices 0..N-1, written by two ranks in interleaved batches."""
FIXED = ["logits", "emb", "pred", "prob", "half", "score_bf16"]
"""Keys whose values have one shape: what default_collate can stack."""


def values(index: int) -> dict[str, Any]:
    """What the test store holds for ``index``: deterministic, so any row can be checked."""
    rng = np.random.default_rng(index)
    return {
        "logits": rng.standard_normal(300).astype(np.float32),  # 1200 B: Zarr
        "emb": rng.standard_normal(640).astype(ml_dtypes.bfloat16),  # 1280 B: Zarr, bfloat16
        "pred": np.int64(index % 7),
        "prob": np.float32(rng.random()),
        "half": np.float16(index / 8),
        "score_bf16": np.array(index / 4, dtype=ml_dtypes.bfloat16),  # Parquet, bfloat16
        "boxes": np.full((index % 4, 4), index, np.float32),  # ragged, Parquet
        "mask": np.full((index % 3 + 1, 20, 30), index % 250, np.uint8),  # ragged, Zarr
        "label": f"cls{index % 3}",
        "maybe": None if index % 5 == 0 else float(index),  # nullable
    }


def write_batch(writer: predstore.StoreWriter, indices: list[int]) -> None:
    rows = [values(i) for i in indices]
    outputs: dict[str, Any] = {}
    for key in rows[0]:
        column = [r[key] for r in rows]
        if key in ("boxes", "mask", "label", "maybe"):
            outputs[key] = column
        elif key in ("emb", "score_bf16"):
            outputs[key] = torch.from_numpy(np.stack(column).view(np.int16)).view(torch.bfloat16)
        else:
            outputs[key] = np.stack(column)
    writer.write(outputs, indices, names=[f"s{i}" for i in indices])


def write_store(path: Path, indices: Iterable[int] = range(N), *, world: int = 2) -> Path:
    """Indices dealt to ``world`` simulated ranks in batches of 7; small chunks and shards."""
    indices = list(indices)
    write_id = layout.new_write_id()
    for rank in range(world):
        mine = [i for k, i in enumerate(indices) if (k // 7) % world == rank]
        with predstore.StoreWriter(
            path,
            rank=rank,
            world_size=world,
            write_id=write_id,
            shard_bytes=16 * 1280,
            chunk_bytes=4 * 1280,
        ) as writer:
            for start in range(0, len(mine), 7):
                write_batch(writer, mine[start : start + 7])
    if world > 1:
        predstore.finalize(path)
    return path


def expected_tensor(key: str, index: int) -> Any:
    """The tensor an item holds for ``key`` (``None`` for a null)."""
    value = values(index)[key]
    if value is None or isinstance(value, str):
        return value
    array = np.asarray(value)
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    if key == "maybe":
        return torch.tensor(value, dtype=torch.float64)
    return torch.from_numpy(array.copy())


def same(a: Any, b: Any) -> bool:
    """Equal values of equal dtype and shape (the test data holds no NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    return bool(a == b)


def check_item(item: dict[str, Any], keys: Iterable[str]) -> None:
    """``item`` holds exactly what was written for its index, under every key."""
    index = item["index"]
    assert isinstance(index, int)
    assert item["name"] == f"s{index}"
    for key in keys:
        assert same(item[key], expected_tensor(key, index)), (key, index, item[key])


def check_batch(batch: dict[str, Any], keys: Iterable[str]) -> list[int]:
    """A collated batch holds exactly what was written for its indices; returns them."""
    indices = batch["index"].tolist()
    assert batch["name"] == [f"s{i}" for i in indices]
    for key in keys:
        got = batch[key]
        want = [expected_tensor(key, i) for i in indices]
        if isinstance(got, list):
            assert all(same(g, w) for g, w in zip(got, want, strict=True)), key
        else:
            assert same(got, torch.stack(want)), (key, indices)
    return indices


class Inputs(Dataset[tuple[torch.Tensor, int]]):
    """A source dataset: item ``i`` is ``(features of i, i)``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return torch.full((3,), float(i)), i


def in_one_buffer(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether the tensors lie in one buffer, one after the other (64-byte aligned): what a
    batch sent from a worker in one transfer looks like (a shared-memory segment or a run
    of the dataset's batch arena)."""
    spans = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in tensors]
    return max(e for _, e in spans) - min(s for s, _ in spans) <= sum(e - s + 64 for s, e in spans)


def scale_logits(item: dict[str, Any]) -> dict[str, Any]:
    """A transform: logits divided by a temperature of 2, and a tag."""
    return {**item, "logits": item["logits"] / 2, "tagged": True}


def add_one(batch: dict[str, Any]) -> dict[str, Any]:
    return {**batch, "pred": batch["pred"] + 1}
