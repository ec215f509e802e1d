"""Property: whatever is written comes back bit for bit, through every read path.

Random keys of every storable dtype and of every kind (scalars, small
vectors, large tensors, ragged rows in Parquet and in Zarr, strings and
numbers with nulls) are written in random batch sizes by several simulated
ranks, finalized, and read back by index, by name, through ``scan`` and
through ``to_pandas``. ``PREDSTORE_EXAMPLES=500`` runs a longer search.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predstore
from predstore.format import dtypes, layout
from predstore.read.values import to_torch

NUMERIC = [d for d in dtypes.SUPPORTED if d != dtypes.STRING]
KINDS = ["scalar", "vector", "tensor", "ragged_small", "ragged_large", "string", "python"]
# What a user declares up front: a first batch cannot show these.
DECLARED = {
    "ragged_large": predstore.KeySpec("zarr"),  # every dimension may vary
    "string": predstore.KeySpec(dtype="string"),  # the first batch may be all None
    "python": predstore.KeySpec(dtype="float64"),
}


@dataclass
class Key:
    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]


def random_values(key: Key, rows: int, rng: np.random.Generator) -> list[Any]:
    """One value per row, as the test keeps them to compare with what is read."""
    if key.kind == "string":
        return [
            None if rng.random() < 0.2 else "".join(rng.choice(list("abcé☃ "), rng.integers(0, 6)))
            for _ in range(rows)
        ]
    if key.kind == "python":
        return [None if rng.random() < 0.2 else float(rng.standard_normal()) for _ in range(rows)]
    if key.kind == "ragged_small":
        shapes = [(int(rng.integers(0, 4)), *key.shape) for _ in range(rows)]
    elif key.kind == "ragged_large":
        shapes = [tuple(int(rng.integers(1, 40)) for _ in key.shape) for _ in range(rows)]
    else:
        shapes = [key.shape] * rows
    return [_array(key.dtype, shape, rng) for shape in shapes]


def _array(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dtype = dtypes.get(name)
    if name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    raw = rng.integers(0, 256, (*shape, dtype.itemsize), dtype=np.uint8)
    return raw.view(dtype.zarr).reshape(shape).view(dtype.numpy)  # every bit pattern, NaNs included


def as_output(key: Key, values: list[Any], as_tensor: bool) -> Any:
    """The batch value a model would return for these rows."""
    if key.kind in ("string", "python"):
        return values
    if key.kind.startswith("ragged"):
        return [to_torch(v, key=key.name) if as_tensor else v for v in values]
    stacked = np.stack(values)
    return to_torch(stacked, key=key.name) if as_tensor else stacked


def bits(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == bool or array.dtype.kind == "O":
        return array
    return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_keys = draw(st.integers(1, 4))
    keys = []
    for i in range(n_keys):
        kind = draw(st.sampled_from(KINDS))
        dtype = draw(st.sampled_from(NUMERIC))
        shape = {
            "scalar": (),
            "vector": (draw(st.integers(1, 6)),),
            "tensor": (draw(st.integers(20, 40)), 16),
            "ragged_small": (draw(st.integers(1, 3)),),
            "ragged_large": (0, 0),
        }.get(kind, ())
        keys.append(Key(f"k{i}.{kind}", kind, dtype, shape))
    rows = draw(st.integers(1, 80))
    ranks = draw(st.integers(1, 3))
    return {
        "keys": keys,
        "rows": rows,
        "ranks": ranks,
        "seed": draw(st.integers(0, 2**32 - 1)),
        "batch": draw(st.integers(1, 17)),
        "shard_bytes": draw(st.sampled_from([2048, 65536, 1 << 26])),
        "tensors": draw(st.booleans()),
    }


@settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenarios())
def test_round_trip_is_bit_exact(scenario: dict[str, Any]) -> None:
    rng = np.random.default_rng(scenario["seed"])
    keys, rows = scenario["keys"], scenario["rows"]
    indices = rng.choice(10 * rows + 5, rows, replace=False)
    data = {k.name: random_values(k, rows, rng) for k in keys}
    names = [f"row-{i}" for i in indices]
    owner = rng.integers(0, scenario["ranks"], rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store"
        write_id = layout.new_write_id()
        for rank in range(scenario["ranks"]):
            mine = np.flatnonzero(owner == rank)
            with predstore.StoreWriter(
                path,
                rank=rank,
                world_size=scenario["ranks"],
                write_id=write_id,
                shard_bytes=scenario["shard_bytes"],
                chunk_bytes=512,
                parquet_max_bytes=256,
                keys={k.name: DECLARED[k.kind] for k in keys if k.kind in DECLARED},
            ) as writer:
                for start in range(0, len(mine), scenario["batch"]):
                    chunk = mine[start : start + scenario["batch"]]
                    outputs = {
                        k.name: as_output(k, [data[k.name][i] for i in chunk], scenario["tensors"])
                        for k in keys
                    }
                    writer.write(outputs, indices[chunk], names=[names[i] for i in chunk])
        if scenario["ranks"] > 1:
            predstore.finalize(path)
        store = predstore.open(path)
        assert len(store) == rows
        check_reads(store, keys, data, indices, names, rng)
        check_frames(store, keys, data, indices)


def check_reads(
    store: predstore.Store,
    keys: list[Key],
    data: dict,
    indices: np.ndarray,
    names: list[str],
    rng: np.random.Generator,
) -> None:
    order = rng.permutation(len(indices))
    for key in keys:
        expected = [data[key.name][i] for i in order]
        by_index = store.read(key.name, indices[order])
        by_name = store.read(key.name, names=[names[i] for i in order])
        for got in (by_index, by_name):
            if key.kind in ("string",):
                assert list(got) == expected
            elif key.kind == "python":
                assert np.ma.getmaskarray(got).tolist() == [v is None for v in expected]
                assert [
                    g for g, v in zip(got.tolist(), expected, strict=False) if v is not None
                ] == [v for v in expected if v is not None]
            elif key.kind.startswith("ragged"):
                assert len(got) == len(expected)
                for g, e in zip(got, expected, strict=False):
                    assert (
                        g.dtype == e.dtype
                        and g.shape == e.shape
                        and np.array_equal(bits(g), bits(e))
                    )
            else:
                assert got.dtype == np.stack(expected).dtype
                assert np.array_equal(bits(got), bits(np.stack(expected)))
        if key.kind not in ("string", "python"):
            tensor = store.read(key.name, indices[order][:3], as_torch=True)
            first = tensor[0] if isinstance(tensor, list) else tensor
            assert first.dtype == getattr(torch, key.dtype)


def check_frames(store: predstore.Store, keys: list[Key], data: dict, indices: np.ndarray) -> None:
    frame = store.scan(sort=True).collect()
    pandas = store.to_pandas()
    order = np.argsort(indices)
    assert frame["index"].to_list() == sorted(indices.tolist())
    assert pandas["index"].tolist() == sorted(indices.tolist())
    for key in keys:
        if key.kind == "string":
            expected = [data[key.name][i] for i in order]
            assert frame[key.name].to_list() == expected
            assert [
                None if isinstance(v, float) else v for v in pandas[key.name].tolist()
            ] == expected
        elif key.kind == "scalar" and key.name in frame.columns:
            dtype = dtypes.get(key.dtype)
            expected = dtype.to_parquet(np.stack([data[key.name][i] for i in order]))
            assert np.array_equal(bits(frame[key.name].to_numpy()), bits(expected))
            assert np.array_equal(bits(pandas[key.name].to_numpy()), bits(expected))
        elif key.kind == "vector" and key.name in frame.columns:
            dtype = dtypes.get(key.dtype)
            expected = dtype.to_parquet(np.stack([data[key.name][i] for i in order]))
            got = frame[key.name].to_numpy()
            assert got.shape == expected.shape and np.array_equal(bits(got), bits(expected))
    assert isinstance(frame, pl.DataFrame)
