"""Fuzzing write(): whatever a model returns, only predstore's documented errors escape."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import predstore

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=4)
)
numpy_dtypes = st.sampled_from(
    [
        "bool",
        "int8",
        "uint16",
        "int64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "U3",
        "O",
        "M8[s]",
        "V4",
    ]
)
torch_dtypes = st.sampled_from(
    [
        torch.bool,
        torch.uint8,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float8_e4m3fn,
        torch.complex64,
        torch.quint8,
    ]
)


odd_layouts = st.sampled_from(["strided"] * 6 + ["sparse", "csr", "meta", "nested"])


def _odd_tensor(layout: str, dense: torch.Tensor) -> torch.Tensor:
    """``dense``, or the same values as a sparse, meta or nested tensor (which must be refused)."""
    if layout == "sparse" and dense.dtype in (torch.float32, torch.int64):
        return dense.to_sparse()
    if layout == "csr" and dense.ndim == 2 and dense.dtype == torch.float32:
        return dense.to_sparse_csr()
    if layout == "meta":
        return dense.to("meta")
    if layout == "nested" and dense.ndim >= 2 and dense.dtype == torch.float32:
        return torch.nested.nested_tensor(list(dense))
    return dense


@st.composite
def arrays(draw: st.DrawFn, rows: int) -> Any:
    shape = (
        draw(st.sampled_from([rows, rows, rows + 1, 0])),
        *draw(st.lists(st.integers(0, 4), max_size=2)),
    )
    if draw(st.booleans()):
        dtype = draw(torch_dtypes)
        if dtype == torch.quint8:
            return torch.quantize_per_tensor(torch.zeros(shape), 0.1, 0, torch.quint8)
        return _odd_tensor(draw(odd_layouts), torch.zeros(shape, dtype=dtype))
    dtype = draw(numpy_dtypes)
    return (
        np.zeros(shape, dtype=dtype)
        if dtype != "O"
        else np.array([object()] * shape[0], dtype=object)
    )


key_names = (
    st.text(max_size=6)
    | st.text(alphabet="ab.", min_size=1, max_size=3)  # nested and dotted keys that collide
    | st.text(alphabet=st.characters(categories=["Cs", "Ll"]), min_size=1, max_size=3)
    | st.text(alphabet="é/.%~ ", min_size=200, max_size=300)  # longer than a file name may be
)


@st.composite
def values(draw: st.DrawFn, rows: int) -> Any:
    kind = draw(st.sampled_from(["scalar", "array", "list", "dict", "object"]))
    if kind == "scalar":
        return draw(scalars)
    if kind == "array":
        return draw(arrays(rows))
    if kind == "list":
        return draw(
            st.lists(
                scalars | arrays(1) | st.lists(scalars, max_size=3),
                min_size=max(0, rows - 1),
                max_size=rows + 1,
            )
        )
    if kind == "dict":
        return {draw(key_names): draw(scalars) for _ in range(draw(st.integers(1, 2)))}
    return draw(st.sampled_from([object(), Path("x"), {1, 2}, slice(1), range(rows)]))


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[Any, Any], Any, Any]:
    rows = draw(st.integers(0, 5))
    keys = draw(st.lists(key_names | st.integers(), max_size=4, unique_by=str))
    outputs = {k: draw(values(rows)) for k in keys}
    indices = draw(
        st.sampled_from(
            [
                list(range(rows)),
                [float(i) for i in range(rows)],
                [-1] * rows,
                "abc",
                None,
                np.arange(rows),
                torch.arange(rows),
                np.full(rows, 2**64 - 1, np.uint64),
                [2**63] * rows,
            ]
        )
    )
    names = draw(
        st.sampled_from(
            [
                None,
                [f"n{i}" for i in range(rows)],
                [1] * rows,
                "name",
                [None] * rows,
                ["\udc80"] * rows,
            ]
        )
    )
    return outputs, indices, names


@pytest.mark.filterwarnings("ignore:.*were None in every row:UserWarning")
@settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=st.lists(batches(), min_size=1, max_size=4))
@example(
    sequence=[
        ({"a": np.zeros((2, 3)), "b": "x"}, [0, 1], None),
        ({"a": [np.zeros(3)] * 2, "b": ["y", None]}, [2, 3], ["p", "q"]),
    ]
)
def test_only_documented_errors_escape_write(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[Any]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "store"
    writer = predstore.StoreWriter(path, background=False)
    accepted = 0
    for outputs, indices, names in sequence:
        try:
            writer.write(outputs, indices, names=names)
            accepted += 1
        except (predstore.InvalidBatchError, predstore.SchemaError):
            pass
    writer.close()
    event(f"batches written: {min(accepted, 2)}{'+' if accepted > 2 else ''}")
    store = predstore.open(path)  # whatever was accepted is committed and readable
    for key in store.schema.keys:
        store.read(key)
