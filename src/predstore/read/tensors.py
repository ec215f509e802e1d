"""Handing read values to torch without copying, bfloat16 and float8 included."""

from __future__ import annotations

from typing import Any

import numpy as np

from predstore.errors import SchemaError
from predstore.format import dtypes

NDArray = np.ndarray[Any, Any]


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
