"""One batch of outputs, checked and turned into columns of numpy data.

:func:`normalize` is the first thing a writer does with user data, and the
only place that knows what users may hand in: torch tensors, numpy arrays,
Python scalars, strings and lists of any of them, in nested dicts. Every
check on the batch happens here, before anything is buffered, so a bad batch
raises without touching what the writer holds.

- A 0-d value or a Python scalar applies to every sample of the batch.
- A tensor or array with a first dimension is one value per sample: its
  first dimension must be the batch length.
- A list is one value per sample; a list of tensors or arrays holds
  per-sample values whose shape may vary (ragged).
- A bare ``None`` is a null in every row of the batch; in a numpy masked
  array (what a store's ``read`` returns for a key with nulls), a row whose
  values are all masked is null.
- Nested dicts are flattened with dots: ``{"det": {"boxes": ...}}`` is key
  ``det.boxes``; two values that flatten to one key are refused.
- Python ints are stored as int64, or as uint64 when a value needs it; they
  are cast to an integer key's dtype when they fit (see :func:`weak_cast`).

torch is never imported here: a tensor can only be handed in if torch was
imported already, so ``sys.modules`` tells whether to look for one.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from predstore.errors import InvalidBatchError, SchemaError
from predstore.format import dtypes
from predstore.format.dtypes import NDArray
from predstore.format.schema import HIDDEN_PREFIX, RESERVED

Kind = Literal["fixed", "ragged", "string", "null"]


@dataclass
class Column:
    """One key's values for the rows of a batch.

    ``fixed``: an array of shape ``(rows, *sample_shape)`` with an optional
    null mask; ``ragged``: one array per row, all of the same dtype and rank;
    ``string``: a list of ``str`` or ``None``; ``null``: every value is
    ``None``, of a type only the key's schema knows. ``weak``: the values
    were Python ints, whose dtype numpy chose (int64 or uint64), not the user.
    """

    kind: Kind
    dtype: str
    values: Any
    mask: NDArray | None = None
    weak: bool = False

    def __len__(self) -> int:
        return len(self.values)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[1:]) if self.kind == "fixed" else ()

    def rows(self) -> list[NDArray]:
        """The values as one array per row (for ragged storage)."""
        return list(self.values) if self.kind == "fixed" else self.values

    def slice(self, start: int, stop: int) -> Column:
        mask = None if self.mask is None else self.mask[start:stop]
        return Column(self.kind, self.dtype, self.values[start:stop], mask, self.weak)

    def copy(self) -> Column:
        """A copy that shares no buffer with the caller's values."""
        if self.kind == "fixed":
            values: Any = np.array(self.values, copy=True)
        elif self.kind == "ragged":
            values = [np.array(a, copy=True) for a in self.values]
        else:
            values = list(self.values)
        mask = None if self.mask is None else self.mask.copy()
        return Column(self.kind, self.dtype, values, mask, self.weak)

    @property
    def nbytes(self) -> int:
        if self.kind == "fixed":
            return int(self.values.nbytes)
        if self.kind == "ragged":
            return sum(int(a.nbytes) for a in self.values)
        return sum(len(v) for v in self.values if v is not None) + 8 * len(self.values)


@dataclass
class Batch:
    """The rows of one ``write`` call: their keys and their columns."""

    indices: NDArray
    names: list[str | None] | None
    dataloader_idx: int
    columns: dict[str, Column]

    def __len__(self) -> int:
        return len(self.indices)

    def copy(self) -> Batch:
        """A copy that shares no buffer with the caller's values (for batches held in memory)."""
        columns = {k: c.copy() for k, c in self.columns.items()}
        names = None if self.names is None else list(self.names)
        return Batch(self.indices.copy(), names, self.dataloader_idx, columns)

    @property
    def nbytes(self) -> int:
        return int(self.indices.nbytes) + sum(c.nbytes for c in self.columns.values())

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(
            self.indices[start:stop],
            None if self.names is None else self.names[start:stop],
            self.dataloader_idx,
            {k: c.slice(start, stop) for k, c in self.columns.items()},
        )

    def take(self, keep: NDArray) -> Batch:
        """The rows where the boolean mask ``keep`` is true."""
        rows = np.flatnonzero(keep)
        names = None if self.names is None else [self.names[i] for i in rows]
        columns = {}
        for key, col in self.columns.items():
            if col.kind == "fixed":
                mask = None if col.mask is None else col.mask[rows]
                columns[key] = Column(col.kind, col.dtype, col.values[rows], mask, col.weak)
            else:
                columns[key] = Column(col.kind, col.dtype, [col.values[i] for i in rows])
        return Batch(self.indices[rows], names, self.dataloader_idx, columns)


def normalize(
    outputs: Mapping[str, Any],
    indices: Any,
    *,
    names: Sequence[Any] | None = None,
    dataloader_idx: int = 0,
    keep: Callable[[str], bool] = lambda key: True,
) -> Batch:
    """Check one batch and convert it to columns; raise before anything is stored."""
    if not isinstance(outputs, Mapping):
        raise InvalidBatchError(
            f"outputs must be a dict of per-batch values, got {type(outputs).__name__}"
        )
    index = check_indices(indices)
    rows = len(index)
    columns = {}
    for key, value in flatten(outputs).items():
        if keep(key):
            check_key(key)
            columns[key] = to_column(key, value, rows)
    return Batch(index, check_names(names, rows), check_dataloader(dataloader_idx), columns)


def flatten(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts flattened with dots; a key reached twice is a ``SchemaError``."""
    flat: dict[str, Any] = {}
    _flatten_into(flat, outputs, "")
    return flat


def _flatten_into(flat: dict[str, Any], outputs: Mapping[str, Any], prefix: str) -> None:
    for key, value in outputs.items():
        if not isinstance(key, str):
            raise SchemaError(f"output keys must be strings, got {key!r} ({type(key).__name__})")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten_into(flat, value, name + ".")
        elif name in flat:
            raise SchemaError(
                f"key {name!r} is given twice: nested dicts are flattened with dots, so "
                f"{{{name!r}: ...}} and the nested {{{key!r}: ...}} under {prefix[:-1]!r} are "
                "the same key, and one value would be lost; rename one of them"
            )
        else:
            flat[name] = value


def check_key(key: str) -> None:
    if key in RESERVED:
        raise SchemaError(
            f"key {key!r} is one of predstore's own columns {sorted(RESERVED)}: rename it, "
            "or pass it as the row's index or name (index_key=/name_key= in PredictionWriter)"
        )
    if not key or key.startswith(HIDDEN_PREFIX) or "\x00" in key:
        raise SchemaError(
            f"key {key!r} is not allowed: keys are non-empty and do not start with '__'"
        )
    if not _is_utf8(key):
        raise SchemaError(
            f"key {key!r} is not valid Unicode text (it holds an unpaired surrogate, often a "
            "file name decoded with errors='surrogateescape'); keys must encode as UTF-8"
        )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_indices(indices: Any) -> NDArray:
    if indices is None or isinstance(indices, str | bytes):
        raise InvalidBatchError(
            f"indices must be one integer per row (each sample's dataset index), got {indices!r}"
        )
    if isinstance(indices, list | tuple | range) and all(type(i) is int for i in indices):
        array = _int_array("indices", list(indices))
    else:
        array = _as_numpy(indices, key="indices")
    if array.ndim != 1:
        raise InvalidBatchError(f"indices must be one-dimensional, got shape {tuple(array.shape)}")
    if array.size and (array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer)):
        raise InvalidBatchError(
            f"indices must be integers (the samples' dataset indices), got dtype {array.dtype}"
        )
    if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
        bad = array[array > np.iinfo(np.int64).max][:5].tolist()
        raise InvalidBatchError(
            f"indices must be below 2**63 (they are stored as int64), got {bad}"
        )
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        bad = array[array < 0][:5].tolist()
        raise InvalidBatchError(f"indices must be non-negative, got {bad}")
    return array


def check_names(names: Sequence[Any] | None, rows: int) -> list[str | None] | None:
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise InvalidBatchError(f"names must be a list of strings, got {type(names).__name__}")
    if len(names) != rows:
        raise InvalidBatchError(f"names has {len(names)} entries but the batch has {rows} rows")
    names = list(names)
    with contextlib.suppress(TypeError):  # join refuses anything but strings: checked fast
        if _is_utf8("".join(names)):
            return names
    for i, name in enumerate(names):
        if name is not None and not isinstance(name, str):
            raise InvalidBatchError(
                f"names must be strings: entry {i} is {name!r} ({type(name).__name__})"
            )
        if name is not None and not _is_utf8(name):
            raise InvalidBatchError(
                f"names must be valid Unicode text: entry {i} ({name!r}) holds an unpaired "
                "surrogate; names must encode as UTF-8"
            )
    return names


def check_dataloader(dataloader_idx: Any) -> int:
    if isinstance(dataloader_idx, bool) or not isinstance(dataloader_idx, int | np.integer):
        raise InvalidBatchError(f"dataloader_idx must be an int, got {dataloader_idx!r}")
    if dataloader_idx < 0:
        raise InvalidBatchError(f"dataloader_idx must be non-negative, got {dataloader_idx}")
    return int(dataloader_idx)


def to_column(key: str, value: Any, rows: int) -> Column:
    """The column of ``rows`` values that ``value`` stands for."""
    if value is None:
        return Column("null", "", [None] * rows)
    if isinstance(value, str):
        return Column("string", dtypes.STRING, [value] * rows)
    if isinstance(value, bool | int | float):
        return _broadcast(key, _scalar_array(key, [value]), rows, weak=_all_ints([value]))
    if isinstance(value, list | tuple):
        return _from_list(key, value, rows)
    array = _as_numpy(value, key=key)
    if array.dtype.kind in "OUS":
        return _from_list(key, array.tolist(), rows)
    if array.ndim == 0:
        return _broadcast(key, array.reshape(1), rows)
    if len(array) != rows:
        raise InvalidBatchError(
            f"key {key!r} has {len(array)} values but the batch has {rows} rows (its indices); "
            "a per-batch value must be 0-d or a Python scalar"
        )
    if isinstance(array, np.ma.MaskedArray):
        return _from_masked(key, array)
    return Column("fixed", dtypes.name_of(array.dtype, key=key), array)


def _from_masked(key: str, array: np.ma.MaskedArray[Any, Any]) -> Column:
    """A masked array's rows, null where every value of a row is masked."""
    dtype = dtypes.name_of(array.dtype, key=key)
    values = np.ma.getdata(array)
    masked = np.ma.getmaskarray(array).reshape(len(array), -1)
    nulls = np.asarray(masked.all(axis=1))
    partial = np.flatnonzero(masked.any(axis=1) & ~nulls)
    if partial.size:
        raise SchemaError(
            f"key {key!r}: row {int(partial[0])} is partly masked; a null is a whole row, so "
            "mask every value of a row or none (fill the masked values to keep the rest)"
        )
    return Column("fixed", dtype, values, nulls if nulls.any() else None)


def _broadcast(key: str, one: NDArray, rows: int, *, weak: bool = False) -> Column:
    return Column("fixed", dtypes.name_of(one.dtype, key=key), np.repeat(one, rows), weak=weak)


def _from_list(key: str, values: Sequence[Any], rows: int) -> Column:
    if len(values) != rows:
        raise InvalidBatchError(
            f"key {key!r} has {len(values)} values but the batch has {rows} rows (its indices)"
        )
    present = [v for v in values if v is not None]
    if not present:
        return Column("null", "", list(values))
    strings = [isinstance(v, str) for v in present]
    if all(strings):
        return Column("string", dtypes.STRING, list(values))
    if any(strings):
        other = present[strings.index(False)]
        raise SchemaError(
            f"key {key!r}: the rows of one batch mix strings ({present[strings.index(True)]!r}) "
            f"and other values ({other!r}, {type(other).__name__}); a key holds one type"
        )
    if all(isinstance(v, bool | int | float) for v in present):
        mask = np.array([v is None for v in values]) if len(present) < len(values) else None
        filler = type(present[0])(0)
        array = _scalar_array(key, [filler if v is None else v for v in values])
        weak = _all_ints(present)
        return Column("fixed", dtypes.name_of(array.dtype, key=key), array, mask, weak)
    if len(present) < len(values):
        null = next(i for i, v in enumerate(values) if v is None)  # index() compares arrays
        raise SchemaError(
            f"key {key!r}: row {null} is None; only strings and Python numbers "
            "may be null (a bare None for the whole key is a null for every row)"
        )
    arrays = _same_dtype(key, values, [_as_numpy(v, key=key) for v in values])
    if all(a.ndim == 0 for a in arrays):
        return Column("fixed", dtypes.name_of(arrays[0].dtype, key=key), np.stack(arrays))
    if len({a.ndim for a in arrays}) > 1:
        raise SchemaError(
            f"key {key!r}: rows have different numbers of dimensions {sorted({a.ndim for a in arrays})}"
        )
    return Column("ragged", dtypes.name_of(arrays[0].dtype, key=key), arrays)


def _same_dtype(key: str, values: Sequence[Any], arrays: list[NDArray]) -> list[NDArray]:
    """The rows of a list, all of one dtype; an empty Python list takes the others' dtype."""
    for value, array in zip(values, arrays, strict=True):
        if array.dtype.kind in "OUS":
            raise SchemaError(
                f"key {key!r}: unsupported value of type {type(value).__name__} in a list of rows"
            )
    typed = [
        i
        for i, (v, a) in enumerate(zip(values, arrays, strict=True))
        if not (isinstance(v, list | tuple) and a.size == 0)
    ] or list(range(len(arrays)))
    first: dict[str, int] = {}
    for i in typed:
        first.setdefault(dtypes.name_of(arrays[i].dtype, key=key), i)
    if len(first) > 1:
        rows = ", ".join(f"row {i} is {name}" for name, i in first.items())
        raise SchemaError(
            f"key {key!r}: the rows of one batch have different dtypes ({rows}); "
            "cast them to one dtype"
        )
    dtype = arrays[typed[0]].dtype
    return [a if a.dtype == dtype else a.astype(dtype) for a in arrays]


def _all_ints(values: Sequence[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _scalar_array(key: str, values: list[Any]) -> NDArray:
    if _all_ints(values):
        return _int_array(key, values)
    try:
        array = np.asarray(values)
    except OverflowError:
        raise SchemaError(f"key {key!r}: an integer does not fit in 64 bits") from None
    if array.dtype.kind == "O":
        raise SchemaError(f"key {key!r}: an integer does not fit in 64 bits")
    return array


INT64 = np.iinfo(np.int64)
UINT64 = np.iinfo(np.uint64)


def _int_array(key: str, values: list[int]) -> NDArray:
    """Python ints as int64, or uint64 when one is above int64 and none is negative (exactly)."""
    if not values:
        return np.zeros(0, np.int64)
    low, high = min(values), max(values)
    if low >= INT64.min and high <= INT64.max:
        return np.array(values, np.int64)
    if low >= 0 and high <= UINT64.max:
        return np.array(values, np.uint64)
    bad = low if low < INT64.min else high
    raise SchemaError(
        f"key {key!r}: the integer {bad} does not fit in 64 bits (int64 holds -2**63..2**63-1, "
        "uint64 0..2**64-1, and one key holds one of them); store it as a string or a float"
    )


def weak_cast(key: str, dtype: str, column: Column) -> Column | None:
    """``column`` cast to the integer ``dtype`` if its values are Python ints that fit; ``None``
    if it is not such a column; a ``SchemaError`` if a value does not fit."""
    if not column.weak or column.kind != "fixed" or dtype == column.dtype:
        return None
    target = None if dtype == dtypes.STRING else dtypes.get(dtype).numpy
    if target is None or target.kind not in "iu":
        return None
    info = np.iinfo(target)
    values = column.values
    outside = (values < info.min) | (values > info.max)
    if outside.any():
        raise SchemaError(
            f"key {key!r}: the value {values[outside][0]} does not fit its dtype {dtype} "
            f"({info.min}..{info.max}); declare a wider dtype, e.g. "
            f"keys={{{key!r}: KeySpec(dtype={'uint64' if values.min() >= 0 else 'int64'!r})}}"
        )
    return Column("fixed", dtype, values.astype(target), column.mask)


def _as_numpy(value: Any, *, key: str) -> NDArray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return tensor_to_numpy(value, key=key)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, range | list | tuple | bool | int | float):
        try:
            return np.asarray(value)
        except ValueError:
            raise SchemaError(
                f"key {key!r}: nested lists of unequal length cannot be stored as one row"
            ) from None
    raise SchemaError(
        f"key {key!r}: values of type {type(value).__module__}.{type(value).__qualname__} cannot be stored; "
        "use tensors, numpy arrays, numbers, strings or lists of them"
    )


def tensor_to_numpy(tensor: Any, *, key: str) -> NDArray:
    """A CPU numpy view of a torch tensor, keeping bfloat16 and float8 as 1- or 2-byte data."""
    import torch

    name = dtypes.name_of(tensor.dtype, key=key)
    _check_tensor(tensor, key=key)
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    dtype = dtypes.get(name)
    if dtype.zarr == dtype.numpy:
        return tensor.numpy()
    bits = torch.uint16 if dtype.itemsize == 2 else torch.uint8
    return tensor.contiguous().view(bits).numpy().view(dtype.numpy)


def _check_tensor(tensor: Any, *, key: str) -> None:
    """Refuse tensors without plain dense values, saying how to convert them."""
    import torch

    if tensor.is_nested:
        raise SchemaError(
            f"key {key!r}: a nested tensor cannot be stored as it is; return tensor.unbind() "
            "(a list of per-sample tensors, stored ragged)"
        )
    if tensor.layout != torch.strided:
        raise SchemaError(
            f"key {key!r}: a {str(tensor.layout).removeprefix('torch.')} tensor cannot be "
            "stored; convert it with tensor.to_dense()"
        )
    if tensor.device.type == "meta":
        raise SchemaError(
            f"key {key!r}: a tensor on the meta device holds no values; compute it on a real "
            "device (cpu, cuda, ...) before returning it"
        )
