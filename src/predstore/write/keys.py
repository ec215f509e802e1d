"""Which keys to store, where, and the schema the first batch gives them.

Routing (``storage="auto"``): strings, scalars and fixed-shape values of at
most ``parquet_max_elements`` elements (32 by default) and ``parquet_max_bytes``
bytes (1 KiB) per sample go to Parquet, where data frame tools analyse them;
longer vectors and larger tensors go to Zarr, which writes them 1.4-2.8x and
reads them 1.6-5x faster (``benchmarks/routing.py``, figures in docs/format.md).
A ragged key is judged by the bytes of its largest row in the first batch
(boxes and token lists stay analysable), and goes to Zarr whatever its size
when a dimension other than the first varies (Parquet lists may only vary in
their first dimension). Users override any key, or any glob pattern of keys,
with a :class:`KeySpec` or its short string form::

    keys={"logits": "zarr", "debug.*": "skip", "mask": KeySpec(codec="zstd", level=5)}

or store only some keys with a list: ``keys=["logits", "pred"]``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from predstore.errors import ConfigError, SchemaError
from predstore.format import dtypes
from predstore.format.schema import KeySchema
from predstore.write.batch import Column, weak_cast

StorageChoice = Literal["auto", "parquet", "zarr", "skip"]

PARQUET_MAX_ELEMENTS = 32
"""Elements per sample up to which a fixed-shape value is a Parquet column (see the module)."""


@dataclass(frozen=True)
class KeySpec:
    """How to store one key, or every key that matches a glob pattern.

    Args:
        storage: ``"auto"`` (the default: the routing rule of docs/format.md),
            ``"parquet"``, ``"zarr"``, or ``"skip"`` to leave the key out.
        codec: the Zarr compressor: ``"auto"`` (the default: compress where it
            pays, see :mod:`predstore.write.codecs`), ``"zstd"``,
            ``"blosc-zstd"``, ``"blosc-lz4"``, ``"gzip"`` or ``"none"``.
        level: the compressor's level; ``None`` for its default.
        dtype: the type of a key whose first batch may hold only ``None``
            (``"string"``, ``"float64"``, ...), which no value can show.

    Example::

        import numpy as np
        import predstore

        keys = {
            "logits": predstore.KeySpec(storage="zarr", codec="zstd", level=3),
            "mask_*": predstore.KeySpec(storage="zarr", codec="blosc-lz4"),  # a glob pattern
            "note": predstore.KeySpec(dtype="string"),  # the first batch may hold only None
        }
        with predstore.StoreWriter("specs.pstore", keys=keys) as writer:
            writer.write(
                {"logits": np.zeros((2, 10), np.float32), "mask_a": np.zeros((2, 8, 8), bool),
                 "note": [None, None]},
                indices=[0, 1],
            )
    """

    storage: StorageChoice = "auto"
    codec: str | None = None
    level: int | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.storage not in ("auto", "parquet", "zarr", "skip"):
            raise ConfigError(
                f"storage must be 'auto', 'parquet', 'zarr' or 'skip', got {self.storage!r}"
            )
        if self.dtype is not None and self.dtype not in dtypes.SUPPORTED:
            raise ConfigError(
                f"dtype must be one of {', '.join(dtypes.SUPPORTED)}, got {self.dtype!r}"
            )


KeysArg = Sequence[str] | Mapping[str, "KeySpec | str | Mapping[str, Any] | None"] | None


class KeyRules:
    """The user's ``keys=`` argument, resolved key by key."""

    def __init__(self, keys: KeysArg = None) -> None:
        self.only: list[str] | None = None
        self.specs: dict[str, KeySpec] = {}
        if keys is None:
            return
        if isinstance(keys, str):
            raise ConfigError(
                f"keys must be a list of key names or a dict, got the string {keys!r}"
            )
        if isinstance(keys, Mapping):
            self.specs = {str(k): _spec(k, v) for k, v in keys.items()}
        else:
            self.only = [str(k) for k in keys]

    def spec(self, key: str) -> KeySpec:
        if key in self.specs:
            return self.specs[key]
        for pattern, spec in self.specs.items():
            if fnmatch.fnmatchcase(key, pattern):
                return spec
        return KeySpec()

    def unmatched(self, keys: Sequence[str]) -> list[str]:
        """The names and patterns of ``keys=`` that match none of ``keys``."""
        rules = [*(self.only or []), *self.specs]
        return [r for r in rules if not any(fnmatch.fnmatchcase(k, r) for k in keys)]

    def keep(self, key: str) -> bool:
        if self.only is not None and not any(fnmatch.fnmatchcase(key, p) for p in self.only):
            return False
        return self.spec(key).storage != "skip"


def _spec(key: str, value: KeySpec | str | Mapping[str, Any] | None) -> KeySpec:
    if isinstance(value, KeySpec):
        return value
    if value is None:
        return KeySpec()
    if isinstance(value, str):
        return KeySpec(storage=value)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {f.name for f in fields(KeySpec)})
        if unknown:
            raise ConfigError(
                f"keys[{key!r}]: unknown field {', '.join(map(str, unknown))}; "
                "a KeySpec has storage, codec, level and dtype"
            )
        return KeySpec(**value)
    raise ConfigError(
        f"keys[{key!r}] must be a KeySpec, 'auto', 'parquet', 'zarr', 'skip' or a dict"
    )


def infer(
    key: str,
    column: Column,
    spec: KeySpec,
    parquet_max_bytes: int,
    parquet_max_elements: int = PARQUET_MAX_ELEMENTS,
) -> KeySchema | None:
    """The schema of ``key`` as its first batch shows it; ``None`` if that batch holds only
    ``None`` and the type is not declared (a later batch will show it)."""
    if column.kind == "null":
        if spec.dtype is None:
            return None
        if spec.storage == "zarr":
            raise SchemaError(
                f"key {key!r} is None in its first batch, but it is declared 'zarr', which cannot "
                "hold nulls; store it in Parquet, or return a value in every batch"
            )
        return KeySchema(spec.dtype, (), "parquet", nullable=True)
    if spec.dtype is not None:
        column = weak_cast(key, spec.dtype, column) or column
    if spec.dtype is not None and spec.dtype != column.dtype:
        raise SchemaError(
            f"key {key!r} is declared {spec.dtype} but its first batch holds {column.dtype}"
        )
    if column.kind == "string":
        if spec.storage == "zarr":
            raise SchemaError(f"key {key!r} holds strings, which are stored in Parquet only")
        return KeySchema(dtypes.STRING, (), "parquet", nullable=_has_nulls(column))
    itemsize = dtypes.get(column.dtype).itemsize
    if column.kind == "fixed":
        shape: tuple[int | None, ...] = column.sample_shape
        if 0 in column.sample_shape:
            raise SchemaError(
                f"key {key!r}: its first batch has the per-sample shape {column.sample_shape}, which "
                "holds no values; if its size varies, return a list of per-sample tensors (ragged), "
                f"or skip the key with keys={{{key!r}: 'skip'}}"
            )
        elements = math.prod(column.sample_shape)
        varies_inside = False
        # Parquet stores every element as a list value: long vectors write and decode slowly.
        small = elements <= parquet_max_elements and elements * itemsize <= parquet_max_bytes
    else:
        shape, varies_inside = _ragged_shape(column.values)
        small = max(a.size for a in column.values) * itemsize <= parquet_max_bytes
    storage = spec.storage
    if storage == "auto":
        storage = "parquet" if small and not varies_inside else "zarr"
    if storage == "parquet" and varies_inside:
        raise SchemaError(
            f"key {key!r}: rows vary in a dimension other than the first ({_describe(column)}); "
            "Parquet lists vary only in length: store the key in Zarr (keys={...: 'zarr'})"
        )
    if storage == "zarr" and column.mask is not None:
        raise SchemaError(f"key {key!r} has null values, which only Parquet columns can hold")
    if storage == "zarr" and column.kind == "ragged":
        shape = (None,) * len(shape)
    return KeySchema(column.dtype, shape, storage, nullable=_has_nulls(column))  # type: ignore[arg-type]


def conform(key: str, schema: KeySchema, column: Column) -> Column:
    """``column`` in the form ``schema`` stores, or a ``SchemaError`` saying what changed."""
    if column.kind == "null":
        return _nulls(key, schema, len(column))
    column = weak_cast(key, schema.dtype, column) or column
    if column.dtype != schema.dtype:
        raise SchemaError(
            f"key {key!r} changed dtype: the first batch fixed it as {schema.describe()}, "
            f"this batch has {column.dtype}; cast it to {schema.dtype} in every batch"
        )
    if column.mask is not None and schema.storage == "zarr":
        raise SchemaError(f"key {key!r} has null values, which only Parquet columns can hold")
    if schema.dtype == dtypes.STRING:
        return column
    if not schema.ragged:
        return _as_fixed(key, schema, column)
    if column.kind == "fixed" and len(column.sample_shape) != len(schema.shape):
        raise _shape_error(key, schema, column)
    rows = column.rows()
    for row in rows:
        if row.ndim != len(schema.shape) or any(
            d is not None and d != n for d, n in zip(schema.shape, row.shape, strict=True)
        ):
            raise _shape_error(key, schema, column)
    return Column("ragged", column.dtype, rows)


def _nulls(key: str, schema: KeySchema, rows: int) -> Column:
    """A batch where ``key`` is None in every row, in the key's own type."""
    if schema.dtype == dtypes.STRING:
        return Column("string", dtypes.STRING, [None] * rows)
    if schema.storage == "zarr" or schema.ragged:
        raise SchemaError(
            f"key {key!r} is None in this batch, but it is stored as {schema.describe()} in "
            f"{schema.storage.title()}, which cannot hold nulls (only Parquet scalars, vectors "
            "and strings can); return a value for it in every batch, or skip the key"
        )
    shape = tuple(int(d) for d in schema.shape if d is not None)
    values = np.zeros((rows, *shape), dtypes.get(schema.dtype).numpy)
    return Column("fixed", schema.dtype, values, np.ones(rows, dtype=bool))


def _as_fixed(key: str, schema: KeySchema, column: Column) -> Column:
    if column.kind == "fixed" and column.sample_shape == schema.shape:
        return column
    if column.kind == "ragged" and all(a.shape == schema.shape for a in column.values):
        return Column("fixed", column.dtype, np.stack(column.values))
    raise _shape_error(key, schema, column)


def _shape_error(key: str, schema: KeySchema, column: Column) -> SchemaError:
    hint = (
        "return a list of per-sample tensors for values whose shape varies, "
        "or declare the key ragged from the start"
        if not schema.ragged
        else "a ragged key keeps its number of dimensions and its fixed dimensions"
    )
    return SchemaError(
        f"key {key!r} changed shape: the first batch fixed it as {schema.describe()} per sample, "
        f"this batch has {_describe(column)}; {hint}"
    )


def _describe(column: Column) -> str:
    if column.kind == "fixed":
        return f"{column.dtype}[{', '.join(map(str, column.sample_shape))}]"
    shapes = sorted({tuple(a.shape) for a in column.values})
    return f"{column.dtype} rows of shapes {shapes[:4]}{' ...' if len(shapes) > 4 else ''}"


def _ragged_shape(rows: list[np.ndarray[Any, Any]]) -> tuple[tuple[int | None, ...], bool]:
    """Per-sample shape of ragged rows (``None`` where they differ), and whether only Zarr can hold
    them: a dimension other than the first varies, or is empty (Arrow has no empty fixed-size list)."""
    shapes = np.array([a.shape for a in rows])
    fixed = (shapes == shapes[0]).all(axis=0)
    shape = (
        None,
        *(int(n) if same else None for n, same in zip(shapes[0][1:], fixed[1:], strict=True)),
    )
    return shape, not fixed[1:].all() or 0 in shape[1:]


def _has_nulls(column: Column) -> bool:
    if column.kind == "string":
        return any(v is None for v in column.values)
    return column.mask is not None
