"""The element types a store holds, and how each is laid out in Zarr and Parquet.

A key's dtype is a name shared by torch, numpy (with ``ml_dtypes``) and the
manifest: ``"float32"``, ``"bfloat16"``, ``"float8_e4m3fn"``, ``"string"``...
Every value round-trips bit for bit:

- In Zarr, every dtype is stored at its own width; types Zarr does not know
  (bfloat16, the float8 family) are stored as unsigned integers of the same
  width, with the true dtype in the array's attributes.
- In Parquet, types that Arrow lacks are widened exactly so that polars,
  pandas and DuckDB can compute on them: bfloat16 to float32 and
  float8_e5m2 to float16 by bit shifting (NaN payloads included), the other
  float8 types to float32 (exact for all 256 bit patterns).

Readers return ``ml_dtypes`` numpy arrays for bfloat16 and float8, or torch
tensors of the same dtype when asked for torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from predstore.errors import SchemaError

NDArray = np.ndarray[Any, Any]
"""The numpy array annotation every module uses: any shape, any dtype."""

STRING = "string"


@dataclass(frozen=True)
class DType:
    """One storable element type: its logical numpy dtype and its on-disk layouts."""

    name: str
    numpy: np.dtype[Any]
    zarr: np.dtype[Any]
    parquet: np.dtype[Any]
    _to_parquet: Callable[[NDArray], NDArray] | None = None
    _from_parquet: Callable[[NDArray], NDArray] | None = None

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    def to_zarr(self, values: NDArray) -> NDArray:
        return values if self.zarr == self.numpy else values.view(self.zarr)

    def from_zarr(self, values: NDArray) -> NDArray:
        return values if self.zarr == self.numpy else values.view(self.numpy)

    def to_parquet(self, values: NDArray) -> NDArray:
        return values if self._to_parquet is None else self._to_parquet(values)

    def from_parquet(self, values: NDArray) -> NDArray:
        if self._from_parquet is None:
            return values.astype(self.numpy, copy=False)
        return self._from_parquet(values)


def _plain(name: str) -> DType:
    dt = np.dtype(name)
    return DType(name, dt, dt, dt)


def _bf16() -> DType:
    bf16, u16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.uint16)
    return DType(
        "bfloat16",
        bf16,
        u16,
        np.dtype(np.float32),
        lambda a: (a.view(u16).astype(np.uint32) << 16).view(np.float32),
        lambda a: (
            (np.ascontiguousarray(a, np.float32).view(np.uint32) >> 16).astype(u16).view(bf16)
        ),
    )


def _f8_e5m2() -> DType:
    # float8_e5m2 is the top byte of a float16, so a shift widens it exactly.
    f8, u8 = np.dtype(ml_dtypes.float8_e5m2), np.dtype(np.uint8)
    return DType(
        "float8_e5m2",
        f8,
        u8,
        np.dtype(np.float16),
        lambda a: (a.view(u8).astype(np.uint16) << 8).view(np.float16),
        lambda a: (np.ascontiguousarray(a, np.float16).view(np.uint16) >> 8).astype(u8).view(f8),
    )


def _f8(name: str) -> DType:
    f8 = np.dtype(getattr(ml_dtypes, name))
    return DType(
        name,
        f8,
        np.dtype(np.uint8),
        np.dtype(np.float32),
        lambda a: a.astype(np.float32),
        lambda a: a.astype(f8),
    )


_TABLE: dict[str, DType] = {
    d.name: d
    for d in [
        *(
            _plain(n)
            for n in (
                "bool",
                "int8",
                "int16",
                "int32",
                "int64",
                "uint8",
                "uint16",
                "uint32",
                "uint64",
                "float16",
                "float32",
                "float64",
            )
        ),
        _bf16(),
        _f8_e5m2(),
        *(
            _f8(n)
            for n in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu")
        ),
    ]
}

SUPPORTED = (*_TABLE, STRING)
"""Every dtype name a key can have."""


_NAMES: dict[Any, str] = {}
"""The names of the numpy and torch dtypes met so far."""


def get(name: str) -> DType:
    """The :class:`DType` called ``name``; ``SchemaError`` for strings or unknown names."""
    try:
        return _TABLE[name]
    except KeyError:
        raise SchemaError(
            f"dtype {name!r} has no numeric layout; supported: {', '.join(SUPPORTED)}"
        ) from None


def name_of(dtype: np.dtype[Any] | Any, *, key: str) -> str:
    """The dtype name of a numpy or torch dtype, or a ``SchemaError`` naming ``key``."""
    name = _NAMES.get(dtype)
    if name is not None:
        return name
    name = str(dtype).removeprefix("torch.")
    if name in _TABLE:
        _NAMES[dtype] = name  # str() of a dtype costs microseconds, once per batch and key
        return name
    raise SchemaError(
        f"key {key!r}: dtype {name} cannot be stored; predstore stores "
        f"{', '.join(SUPPORTED)} (convert the value, or skip the key with keys={{{key!r}: 'skip'}})"
    )
