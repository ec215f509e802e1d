"""From the values of a batch of rows to what a DataLoader hands on: items, and whole batches.

A row reader gives each key's values for a batch at once. The map-style
dataset keeps them whole in :class:`Items` and makes one dict per row
(what ``dataset[i]`` and ``default_collate`` expect) only when asked:
:func:`collate`, and ``default_collate`` through the :class:`Row` type
registered in torch's ``default_collate_fn_map``, take the values whole,
without making and stacking a tensor per row. In a DataLoader worker, a
whole batch is written into one shared-memory buffer: the main process
then receives every tensor of the batch in one transfer instead of one
per key."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info
from torch.utils.data._utils.collate import collate as torch_collate
from torch.utils.data._utils.collate import default_collate_fn_map

from predstore.datasets.arena import BatchArena, Marker
from predstore.datasets.rowreader import RowReader
from predstore.format.dtypes import NDArray
from predstore.format.schema import INDEX, NAME
from predstore.read.values import to_torch

_ALIGN = 64


class Row(dict[str, Any]):
    """One item of a batch the map-style dataset read: a plain dict of its values.

    Its own type only so that ``default_collate`` (through torch's
    ``default_collate_fn_map``, where this module registers it) hands the
    batch to :func:`_collate_rows`, which takes it whole instead of stacking
    a tensor per row.
    """

    __slots__ = ()


class Items(Sequence[Any]):
    """The items of one batch, with the batch's values kept whole.

    Built from ``values`` alone, the items are rows made only when asked
    for (``default_collate`` looks at the first; the collates here take the
    values whole unless a row was changed). Otherwise ``items`` are given
    (transformed or paired with a source's items), and ``values`` is
    ``None`` when the items were transformed: only the items then say what
    the batch holds. ``arena``: the memory a worker hands whole batches on
    in (see :mod:`predstore.datasets.arena`).
    """

    def __init__(
        self,
        values: dict[str, Any] | None,
        items: Sequence[Any] | None = None,
        sources: list[Any] | None = None,
        *,
        as_torch: bool = True,
        arena: BatchArena | None = None,
    ) -> None:
        if items is None and values is None:
            raise ValueError("items are made from values: one of the two must be given")
        self.values, self.sources, self.as_torch = values, sources, as_torch
        self._items, self.arena = items, arena
        self._made: dict[int, tuple[Row, tuple[Any, ...]]] = {}  # row, and its values as made
        self._tensors: dict[str, Any] = {}

    def __len__(self) -> int:
        if self._items is not None:
            return len(self._items)
        assert self.values is not None
        return len(self.values[INDEX])

    def __getitem__(self, at: Any) -> Any:
        if self._items is not None:
            return self._items[at]
        if isinstance(at, slice):
            return self._rows()[at]
        n = len(self)
        at = operator.index(at)
        if not -n <= at < n:
            raise IndexError(f"item {at} of a batch of {n}")
        at %= n
        if at not in self._made:
            self._keep(at, self._row(at))
        return self._made[at][0]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items if self._items is not None else self._rows())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __reduce__(self) -> Any:  # a list of the items, not the values whole besides
        return list, (list(self),)

    def unchanged(self) -> bool:
        """Whether the rows made so far still hold what they were made with."""
        if self.values is None:
            return False
        keys = tuple(self.values)
        return all(
            tuple(row) == keys and all(a is b for a, b in zip(row.values(), made, strict=True))
            for row, made in self._made.values()
        )

    def _keep(self, at: int, row: Row) -> None:
        self._made[at] = (row, tuple(row.values()))

    def _row(self, at: int) -> Row:
        assert self.values is not None
        row = Row()
        for key, value in self.values.items():
            if key == INDEX:
                row[key] = int(value[at])
            elif self.as_torch and _plain(value):
                row[key] = self._tensor(key)[at]
            else:
                row[key] = per_row(value[at : at + 1], key, 1, as_torch=self.as_torch)[0]
        return row

    def _rows(self) -> list[Row]:
        """Every row (those made before stay the same objects)."""
        assert self.values is not None
        if len(self._made) < len(self):
            n, keys = len(self), list(self.values)
            columns = [
                self.values[k].tolist()
                if k == INDEX
                else list(self._tensor(k).unbind(0))
                if self.as_torch and _plain(self.values[k])
                else per_row(self.values[k], k, n, as_torch=self.as_torch)
                for k in keys
            ]
            for at, row in enumerate(zip(*columns, strict=True)):
                if at not in self._made:
                    self._keep(at, Row(zip(keys, row, strict=True)))
        return [self._made[at][0] for at in range(len(self))]

    def _tensor(self, key: str) -> Any:
        """The key's values as one tensor that its rows are views of, sharing the memory of
        ``values[key]`` (so that a row changed in place is seen by the collates)."""
        assert self.values is not None
        if key not in self._tensors:
            value = np.ma.getdata(self.values[key])
            if not (value.flags.writeable and value.flags.c_contiguous):
                value = np.ascontiguousarray(value).copy()
            self.values[key] = value
            self._tensors[key] = to_torch(value, key=key)
        return self._tensors[key]


def _plain(value: Any) -> bool:
    """Whether a key's values for a batch are one array of numbers (no strings, ragged
    rows or nulls)."""
    if isinstance(value, list) or value.dtype == object:
        return False
    return not (isinstance(value, np.ma.MaskedArray) and np.ma.getmaskarray(value).any())


def read_rows(reader: RowReader, local: NDArray) -> dict[str, Any]:
    """The chosen keys of rows ``local``, then ``index`` and (when the store has them) ``name``."""
    values = reader.read(local)
    values[INDEX] = reader.index[local]
    if reader.has_names:
        values[NAME] = reader.name_array(local)
    return values


def items_of(values: dict[str, Any], *, as_torch: bool) -> list[dict[str, Any]]:
    """One dict per row; ``index`` as an int and ``name`` as a str."""
    n = len(values[INDEX])
    keys = list(values)
    columns = [
        values[k].tolist() if k == INDEX else per_row(values[k], k, n, as_torch=as_torch)
        for k in keys
    ]
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def per_row(value: Any, key: str, n: int, *, as_torch: bool) -> list[Any]:
    """The values of one key, as a list with one entry per row (``None`` for a null)."""
    if isinstance(value, list):  # ragged
        return [to_torch(v, key=key) for v in value] if as_torch else value
    if value.dtype == object:  # strings
        strings: list[Any] = value.tolist()
        return strings
    if isinstance(value, np.ma.MaskedArray):
        mask: NDArray = np.ma.getmaskarray(value)
        null: Any = mask.reshape(n, -1).any(axis=1).tolist()
        rows = per_row(np.ma.getdata(value), key, n, as_torch=as_torch)
        return [None if z else r for r, z in zip(rows, null, strict=True)]
    if as_torch:
        return list(to_torch(value, key=key).unbind(0))
    return list(value)


def whole_batch(
    values: dict[str, Any], *, as_torch: bool, arena: BatchArena | None = None
) -> dict[str, Any]:
    """A batch as one dict: each fixed-shape key stacked, ragged keys, strings and nulls as lists.

    In a DataLoader worker, the stacked tensors share one run of ``arena``
    or, without a free one, one new shared-memory buffer.
    """
    out: dict[str, Any] = {}
    stacked: dict[str, NDArray] = {}
    for key, value in values.items():
        if isinstance(value, np.ma.MaskedArray) and not np.ma.getmaskarray(value).any():
            value = np.ma.getdata(value)
        if isinstance(value, list) or value.dtype == object or isinstance(value, np.ma.MaskedArray):
            out[key] = per_row(value, key, len(value), as_torch=as_torch)
        else:
            stacked[key] = value
    if not as_torch:
        out.update({k: _own(v) for k, v in stacked.items()})
    elif get_worker_info() is None or not stacked:
        out.update({k: to_torch(_own(v), key=k) for k, v in stacked.items()})
    else:
        out.update(_shared(stacked, arena))
    return {k: out[k] for k in values}


def collate(batch: Sequence[Any]) -> Any:
    """``default_collate``, keeping as lists what it cannot stack (ragged tensors, None).

    Given what :class:`~predstore.PredictionDataset` read for a batch, it
    takes the batch's values whole instead of stacking one tensor per row.
    """
    if isinstance(batch, Items) and batch.unchanged():
        assert batch.values is not None
        whole = whole_batch(batch.values, as_torch=batch.as_torch, arena=batch.arena)
        return whole if batch.sources is None else [collate(batch.sources), whole]
    first = batch[0]
    if isinstance(first, Mapping):
        return {k: collate([b[k] for b in batch]) for k in first}
    if isinstance(first, tuple) and not hasattr(first, "_fields"):  # a list, as default_collate
        return [collate(list(column)) for column in zip(*batch, strict=True)]
    if isinstance(first, torch.Tensor):
        if all(isinstance(b, torch.Tensor) and b.shape == first.shape for b in batch):
            return default_collate(list(batch))
        return list(batch)
    if any(b is None for b in batch):
        return list(batch)
    return default_collate(list(batch))


def _collate_rows(batch: Sequence[Any], *, collate_fn_map: dict[Any, Any] | None = None) -> Any:
    """What ``default_collate`` makes of rows: a batch read whole is taken whole when that is
    what stacking its rows would give, any other batch of rows key by key, as for a dict."""
    if isinstance(batch, Items) and batch.as_torch and batch.unchanged():
        assert batch.values is not None
        if all(_stacks_whole(v) for v in batch.values.values()):
            return whole_batch(batch.values, as_torch=True, arena=batch.arena)
    return {
        key: torch_collate(
            [row[key] for row in batch], collate_fn_map=collate_fn_map or default_collate_fn_map
        )
        for key in batch[0]
    }


def _stacks_whole(value: Any) -> bool:
    """Whether ``default_collate`` of a key's rows is what :func:`whole_batch` makes of its
    values: an array of numbers is stacked; strings come as a list (unless the first is
    None, which it refuses); ragged rows are stacked only where their shapes agree."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return len(value) > 0 and value[0] is not None
    return _plain(value)


default_collate_fn_map[Row] = _collate_rows


def _own(value: NDArray) -> NDArray:
    # A view would carry all of its base along (and a worker would send the whole base).
    return value.copy() if value.base is not None else value


def _shared(stacked: dict[str, NDArray], arena: BatchArena | None) -> dict[str, torch.Tensor]:
    """The arrays as tensors in one run of ``arena`` or, without one, a new shared buffer."""
    offsets, total = {}, 0
    for key, value in stacked.items():
        offsets[key] = total
        total += -(-value.nbytes // _ALIGN) * _ALIGN
    found = arena.buffer(total) if arena is not None else None
    mark: Marker = _as_is
    if found is None:
        # What default_collate does in a worker: the buffer is born shared, never copied there.
        storage = torch.UntypedStorage._new_shared(max(total, 1))  # type: ignore[no-untyped-call]
        buffer = torch.empty(0, dtype=torch.uint8).set_(storage)
    else:
        buffer, mark = found
    out = {}
    for key, value in stacked.items():
        start = offsets[key]
        part = buffer[start : start + value.nbytes]
        part.numpy()[:] = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        dtype = to_torch(value[:0], key=key).dtype
        out[key] = mark(part.view(dtype).view(value.shape), start)
    return out


def _as_is(tensor: torch.Tensor, start: int) -> torch.Tensor:
    return tensor
