"""Turning a Parquet key's Arrow column back into the values that were written."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from predstore.format import dtypes
from predstore.format.schema import KeySchema

NDArray = np.ndarray[Any, Any]


def from_arrow(spec: KeySchema, column: pa.Array | pa.ChunkedArray) -> NDArray | list[NDArray]:
    """Fixed keys as one array (masked where null), ragged keys as a list, strings as objects."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if spec.dtype == dtypes.STRING:
        return np.array(array.to_pylist(), dtype=object)
    dtype = dtypes.get(spec.dtype)
    if spec.ragged:
        starts = array.offsets.to_numpy()
        flat = _values(array.flatten(), spec.shape[1:], dtype)
        return np.split(flat, starts[1:-1] - starts[0]) if len(array) else []
    values = _values(array, spec.shape, dtype)
    if array.null_count:
        mask = array.is_null().to_numpy(zero_copy_only=False)
        return np.ma.masked_array(
            values, mask=np.broadcast_to(mask.reshape(-1, *[1] * len(spec.shape)), values.shape)
        )
    return values


def _values(array: pa.Array, shape: tuple[int | None, ...], dtype: dtypes.DType) -> NDArray:
    rows = len(array)
    for _ in shape:
        array = array.flatten()
    if array.null_count:
        array = array.fill_null(0)
    flat = array.to_numpy(zero_copy_only=False)
    return dtype.from_parquet(flat).reshape(rows, *[int(d) for d in shape if d is not None])
