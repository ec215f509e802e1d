from __future__ import annotations

import ml_dtypes
import numpy as np
import pyarrow as pa
import pytest
import torch

from predstore.errors import SchemaError
from predstore.format import dtypes
from predstore.read.values import to_torch
from predstore.write.batch import tensor_to_numpy

NARROW = {
    "bfloat16": 16,
    "float8_e5m2": 8,
    "float8_e4m3fn": 8,
    "float8_e4m3fnuz": 8,
    "float8_e5m2fnuz": 8,
    "float8_e8m0fnu": 8,
}


@pytest.mark.parametrize("name", sorted(NARROW))
def test_every_bit_pattern_survives_parquet_and_zarr(name: str) -> None:
    dtype = dtypes.get(name)
    bits = np.arange(2 ** NARROW[name], dtype=np.uint16 if NARROW[name] == 16 else np.uint8)
    values = bits.view(dtype.numpy)
    widened = dtype.to_parquet(values)
    assert pa.from_numpy_dtype(widened.dtype)  # Arrow knows the widened type
    back = dtype.from_parquet(widened)
    assert back.dtype == dtype.numpy
    assert np.array_equal(back.view(bits.dtype), bits)
    assert np.array_equal(dtype.from_zarr(dtype.to_zarr(values)).view(bits.dtype), bits)


def test_float16_nan_payloads_survive() -> None:
    bits = np.array([0x7C01, 0xFE01, 0x3C00], dtype=np.uint16)
    values = bits.view(np.float16)
    dtype = dtypes.get("float16")
    assert np.array_equal(dtype.from_parquet(dtype.to_parquet(values)).view(np.uint16), bits)


def test_bfloat16_widens_to_readable_float32() -> None:
    values = np.array([1.5, -2.0, 0.0078125], dtype=ml_dtypes.bfloat16)
    assert dtypes.get("bfloat16").to_parquet(values).tolist() == [1.5, -2.0, 0.0078125]


@pytest.mark.parametrize(
    "dtype",
    [
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.uint16,
        torch.uint32,
        torch.uint64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.float8_e4m3fn,
        torch.float8_e5m2,
        torch.float8_e4m3fnuz,
        torch.float8_e5m2fnuz,
    ],
)
def test_torch_round_trip_is_bit_exact(dtype: torch.dtype) -> None:
    source = torch.randint(0, 255, (5, 3), dtype=torch.uint8)
    tensor = source.view(dtype) if dtype.itemsize == 1 else source.to(torch.int64).to(dtype)
    array = tensor_to_numpy(tensor, key="k")
    back = to_torch(array, key="k")
    assert back.dtype == dtype
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[dtype.itemsize]
    if dtype == torch.bool:
        assert torch.equal(back, tensor)
    else:
        assert torch.equal(back.view(width), tensor.view(width))


@pytest.mark.parametrize("bad", [np.complex64, np.dtype("O"), np.dtype("<U3"), np.dtype("M8[s]")])
def test_unstorable_dtypes_name_the_key(bad: object) -> None:
    with pytest.raises(SchemaError, match="key 'z'.*cannot be stored"):
        dtypes.name_of(np.dtype(bad), key="z")  # type: ignore[call-overload]


def test_torch_complex_is_refused() -> None:
    with pytest.raises(SchemaError, match="key 'c': dtype complex64 cannot be stored"):
        tensor_to_numpy(torch.zeros(2, dtype=torch.complex64), key="c")
