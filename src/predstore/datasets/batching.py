"""From the values of a batch of rows to what a DataLoader hands on: items, and whole batches.

A row reader gives each key's values for a batch at once. The map-style
dataset turns them into one dict per row (what ``dataset[i]`` and
``default_collate`` expect) and keeps the batch's values alongside, so that
:func:`collate` can hand them on whole, without making and stacking a
tensor per row. In a DataLoader worker, a whole batch is written into one
shared-memory buffer: the main process then receives every tensor of the
batch in one transfer instead of one per key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

from predstore.datasets.rowreader import RowReader
from predstore.format.dtypes import NDArray
from predstore.format.schema import INDEX, NAME
from predstore.read.values import to_torch

_ALIGN = 64


class Items(list[Any]):
    """The items of one batch (a plain list of them), with the batch's values kept whole.

    ``values`` is ``None`` when the items were transformed: only the items
    then say what the batch holds.
    """

    def __init__(
        self,
        items: Sequence[Any],
        values: dict[str, Any] | None,
        sources: list[Any] | None = None,
        *,
        as_torch: bool = True,
    ) -> None:
        super().__init__(items)
        self.values, self.sources, self.as_torch = values, sources, as_torch


def read_rows(reader: RowReader, local: NDArray) -> dict[str, Any]:
    """The chosen keys of rows ``local``, then ``index`` and (when the store has them) ``name``."""
    values = reader.read(local)
    values[INDEX] = reader.index[local]
    if reader.has_names:
        values[NAME] = np.array(reader.names(local), dtype=object)
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


def whole_batch(values: dict[str, Any], *, as_torch: bool) -> dict[str, Any]:
    """A batch as one dict: each fixed-shape key stacked, ragged keys, strings and nulls as lists.

    In a DataLoader worker, the stacked tensors share one shared-memory buffer.
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
        out.update(_shared(stacked))
    return {k: out[k] for k in values}


def collate(batch: Sequence[Any]) -> Any:
    """``default_collate``, keeping as lists what it cannot stack (ragged tensors, None).

    Given what :class:`~predstore.PredictionDataset` read for a batch, it
    takes the batch's values whole instead of stacking one tensor per row.
    """
    if isinstance(batch, Items) and batch.values is not None:
        whole = whole_batch(batch.values, as_torch=batch.as_torch)
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


def _own(value: NDArray) -> NDArray:
    # A view would carry all of its base along (and a worker would send the whole base).
    return value.copy() if value.base is not None else value


def _shared(stacked: dict[str, NDArray]) -> dict[str, torch.Tensor]:
    """The arrays as tensors in one new shared-memory buffer."""
    offsets, total = {}, 0
    for key, value in stacked.items():
        offsets[key] = total
        total += -(-value.nbytes // _ALIGN) * _ALIGN
    # What default_collate does in a worker: the buffer is born shared, never copied there.
    storage = torch.UntypedStorage._new_shared(max(total, 1))  # type: ignore[no-untyped-call]
    buffer = torch.empty(0, dtype=torch.uint8).set_(storage)
    out = {}
    for key, value in stacked.items():
        start = offsets[key]
        part = buffer[start : start + value.nbytes]
        part.numpy()[:] = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        dtype = to_torch(value[:0], key=key).dtype
        out[key] = part.view(dtype).view(value.shape)
    return out
