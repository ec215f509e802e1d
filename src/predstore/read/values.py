"""Value conversions on the way out: Arrow columns back to the written values, values to torch.

Both keep bfloat16 and float8 bit-exact, and neither copies unless it must.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from predstore.errors import SchemaError
from predstore.format import dtypes
from predstore.format.dtypes import NDArray
from predstore.format.schema import KeySchema


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
    for _ in shape:  # fixed-size lists: a null row still holds its slots (flatten skips them)
        size = array.type.list_size
        array = array.values.slice(array.offset * size, len(array) * size)
    if array.null_count:  # the slots of null rows, masked by the caller: any value of the type
        array = array.fill_null(False if pa.types.is_boolean(array.type) else 0)
    flat = array.to_numpy(zero_copy_only=False)
    return dtype.from_parquet(flat).reshape(rows, *[int(d) for d in shape if d is not None])


def to_torch(values: Any, *, key: str) -> Any:
    """A tensor for a numpy array, a list of tensors for a list of arrays; strings stay as they are."""
    import torch

    if isinstance(values, list):
        return [to_torch(v, key=key) for v in values]
    if not isinstance(values, np.ndarray) or values.dtype == object:
        return values
    if isinstance(values, np.ma.MaskedArray):
        raise SchemaError(
            f"key {key!r} has null values, which a tensor cannot hold; read it as numpy"
        )
    dtype = dtypes.get(dtypes.name_of(values.dtype, key=key))
    values = np.ascontiguousarray(values)
    if not values.flags.writeable:  # Arrow buffers are read-only; a tensor must own writable memory
        values = values.copy()
    if dtype.zarr == dtype.numpy:
        return torch.from_numpy(values)
    return torch.from_numpy(values.view(dtype.zarr)).view(getattr(torch, dtype.name))
