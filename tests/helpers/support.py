"""Helpers that tests share: small stores written with the real StoreWriter."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

import predstore
from predstore.format import layout


def sample(index: int) -> dict[str, Any]:
    """The values of sample ``index``: deterministic, so any row can be checked."""
    rng = np.random.default_rng(index)
    return {
        "logits": rng.standard_normal(300).astype(np.float32),
        "pred": np.int64(index % 7),
        "prob": np.float32(rng.random()),
    }


def batch(indices: Iterable[int]) -> dict[str, Any]:
    rows = [sample(i) for i in indices]
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def write_ranks(
    path: Path,
    indices_per_rank: list[list[int]],
    *,
    batch_size: int = 16,
    finalize: bool = True,
    **writer_args: Any,
) -> str:
    """Write one store with one simulated rank per list of indices; return the write id."""
    write_id = layout.new_write_id()
    world = len(indices_per_rank)
    for rank, indices in enumerate(indices_per_rank):
        with predstore.StoreWriter(
            path, rank=rank, world_size=world, write_id=write_id, **writer_args
        ) as w:
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                w.write(batch(chunk), chunk, names=[f"s{i}" for i in chunk])
    if finalize and world > 1:
        predstore.finalize(path)
    return write_id


def assert_rows(store: predstore.Store, indices: Iterable[int]) -> None:
    """The store holds exactly ``indices`` with the values :func:`sample` gives them."""
    wanted = sorted(indices)
    assert store.indices().tolist() == wanted
    expected = batch(wanted)
    for key in expected:
        assert np.array_equal(store.read(key, wanted), expected[key]), key


def write_mixed(path: Path, rows: int = 64) -> None:
    """A store with every kind of stored byte: Parquet keys, an uncompressed Zarr key
    (``logits``), a zstd key (``mask``) and a zstd ragged key (``tokens``), several inner
    chunks per shard."""
    keys = {"mask": {"codec": "zstd"}, "tokens": {"storage": "zarr", "codec": "zstd"}}
    with predstore.StoreWriter(path, keys=keys, chunk_bytes=4096, shard_bytes=64 << 10) as w:
        for start in range(0, rows, 16):
            indices = list(range(start, min(rows, start + 16)))
            w.write(batch(indices) | mixed_batch(indices), indices)


def mixed_batch(indices: Iterable[int]) -> dict[str, Any]:
    """The ``mask`` and ``tokens`` values of :func:`write_mixed`."""
    indices = list(indices)
    return {
        "mask": np.stack([(np.arange(2048) % (i % 5 + 2) == 0).astype(np.uint8) for i in indices]),
        "tokens": [np.arange(i % 7 + 300, dtype=np.int32) * i for i in indices],
    }
