"""The schema of a store: each key's dtype, per-sample shape and storage.

A Parquet part holds the columns ``index``, ``dataloader_idx`` and ``name``,
then one column per Parquet key, then, for each ragged Zarr key, the two
hidden columns that locate its rows in the flat Zarr array
(``__offset__.<key>``, ``__shape__.<key>``). Fixed-shape values are nested
fixed-size lists (polars reads them as ``Array``); values whose leading
dimension varies are lists of them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import pyarrow as pa

from predstore.errors import SchemaError
from predstore.format import dtypes

Storage = Literal["parquet", "zarr"]

INDEX = "index"
DATALOADER = "dataloader_idx"
NAME = "name"
RESERVED = frozenset({INDEX, DATALOADER, NAME})
HIDDEN_PREFIX = "__"


class KeySchema(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How one key is stored. ``shape`` is per sample; ``None`` marks a dimension that varies."""

    dtype: str
    shape: tuple[int | None, ...]
    storage: Storage
    nullable: bool = False

    @property
    def ragged(self) -> bool:
        return None in self.shape

    @property
    def row_bytes(self) -> int:
        """Bytes of one sample (0 for strings and ragged keys, whose size varies)."""
        if self.dtype == dtypes.STRING or self.ragged:
            return 0
        return math.prod(self.shape) * dtypes.get(self.dtype).itemsize  # type: ignore[arg-type]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]" if self.shape else self.dtype


class Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The keys of a store, in the order their columns appear, and whether rows carry names."""

    keys: dict[str, KeySchema]
    names: bool = False

    def merge(self, other: Schema, *, where: str) -> Schema:
        """The schema both sides can share, or a ``SchemaError`` naming the first difference.

        A schema without keys (a store or rank with no rows yet) fits any other.
        """
        if not self.keys or not other.keys:
            return Schema(self.keys or other.keys, names=self.names or other.names)
        if list(self.keys) != list(other.keys):
            missing = sorted(set(self.keys) - set(other.keys))
            extra = sorted(set(other.keys) - set(self.keys))
            raise SchemaError(
                f"{where}: the keys differ (missing {missing or 'none'}, extra {extra or 'none'}); "
                f"expected {list(self.keys)}, got {list(other.keys)}"
            )
        merged = {}
        for name, mine in self.keys.items():
            theirs = other.keys[name]
            if (mine.dtype, mine.shape, mine.storage) != (
                theirs.dtype,
                theirs.shape,
                theirs.storage,
            ):
                raise SchemaError(
                    f"{where}: key {name!r} is {theirs.describe()} in {theirs.storage}, "
                    f"expected {mine.describe()} in {mine.storage}"
                )
            merged[name] = msgspec.structs.replace(mine, nullable=mine.nullable or theirs.nullable)
        return Schema(merged, names=self.names or other.names)


def offset_column(key: str) -> str:
    return f"{HIDDEN_PREFIX}offset__.{key}"


def shape_column(key: str) -> str:
    return f"{HIDDEN_PREFIX}shape__.{key}"


def value_type(key: KeySchema) -> pa.DataType:
    """The Arrow type of one sample of a Parquet key."""
    if key.dtype == dtypes.STRING:
        return pa.string()
    value: pa.DataType = pa.from_numpy_dtype(dtypes.get(key.dtype).parquet)
    for dim in reversed(key.shape[1:] if key.ragged else key.shape):
        if dim is None:
            raise SchemaError(
                f"a Parquet key may only vary in its first dimension, got {key.describe()}"
            )
        value = pa.list_(value, dim)
    return pa.list_(value) if key.ragged else value


ROW_KEYS = pa.schema(
    [
        pa.field(INDEX, pa.int64(), nullable=False),
        pa.field(DATALOADER, pa.int64(), nullable=False),
        pa.field(NAME, pa.string()),
    ]
)
"""The columns every Parquet part begins with."""


def part_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of every Parquet part of a store with this schema."""
    fields = list(ROW_KEYS)
    hidden = []
    for name, key in schema.keys.items():
        if key.storage == "parquet":
            fields.append(pa.field(name, value_type(key), metadata={"predstore.dtype": key.dtype}))
        elif key.ragged:
            ndim = len(key.shape)
            hidden.append(pa.field(offset_column(name), pa.int64(), nullable=False))
            hidden.append(pa.field(shape_column(name), pa.list_(pa.int64(), ndim), nullable=False))
    return pa.schema(fields + hidden)


def nest(flat: pa.Array, shape: tuple[int | None, ...], mask: Any = None) -> pa.Array:
    """``flat`` grouped into nested fixed-size lists of ``shape`` (innermost dimension last).

    ``mask`` (a boolean numpy array, true where null) applies to the outermost level.
    """
    for i, dim in enumerate(reversed(shape)):
        outer = i == len(shape) - 1
        flat = pa.FixedSizeListArray.from_arrays(
            flat, int(dim or 0), mask=pa.array(mask) if outer and mask is not None else None
        )
    return flat
