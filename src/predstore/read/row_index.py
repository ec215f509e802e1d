"""The row index of a store: where each visible (dataloader_idx, index) lives.

Built once per opened store from the parts' key columns (16 bytes a row to
read, 24 to keep). When a key was written more than once, the reader sees
the first committed row: the first in the manifest's part order, which
lists writes in commit order, then ranks, then each rank's parts in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from predstore.errors import InvalidBatchError, MissingRowsError
from predstore.format.coverage import row_keys
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import StoreManifest
from predstore.format.parquet import read_part
from predstore.format.schema import NAME


class RowIndex:
    """Visible rows sorted by (dataloader_idx, index), with their part and row within it."""

    def __init__(self, fs: FileSystem, manifest: StoreManifest) -> None:
        self._fs, self._parts = fs, manifest.parts
        dl, index = row_keys(fs, manifest.parts)
        sizes = np.array([p.rows for p in manifest.parts], dtype=np.int64)
        part = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        row = np.arange(len(dl), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        order = np.lexsort((index, dl))  # stable: equal keys keep manifest order
        dl, index = dl[order], index[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (dl[1:] != dl[:-1]) | (index[1:] != index[:-1])
        self.dataloader_idx, self.index = dl[first], index[first]
        self.part, self.row = part[order][first], row[order][first].astype(np.int32)
        self._name_col: NDArray | None = None
        self._names: tuple[NDArray, NDArray] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def dataloader(self, dataloader_idx: int) -> slice:
        """The positions of one dataloader's rows, in index order."""
        lo, hi = np.searchsorted(self.dataloader_idx, [dataloader_idx, dataloader_idx + 1])
        return slice(int(lo), int(hi))

    def locate(self, indices: Sequence[int] | NDArray, dataloader_idx: int = 0) -> NDArray:
        """Positions of ``indices`` of ``dataloader_idx``, in the order asked."""
        wanted = integer_indices(indices)
        span = self.dataloader(dataloader_idx)
        keys = self.index[span]
        at = np.searchsorted(keys, wanted)
        found = at < len(keys)
        found[found] = keys[at[found]] == wanted[found]
        if not found.all():
            missing = wanted[~found]
            raise MissingRowsError(
                f"{missing.size} of the {wanted.size} indices asked are not in dataloader "
                f"{dataloader_idx} of the store (first: {missing[:5].tolist()}); it holds "
                f"{len(keys)} rows there, indices {_range(keys)}"
            )
        return at + span.start

    def locate_names(self, names: Sequence[str], dataloader_idx: int = 0) -> NDArray:
        """Positions of the rows called ``names`` in ``dataloader_idx``, in the order asked."""
        span = self.dataloader(dataloader_idx)
        sorted_names, positions = self._name_index()
        inside = (positions >= span.start) & (positions < span.stop)
        sorted_names, positions = sorted_names[inside], positions[inside]
        wanted = np.asarray(list(names), dtype=object)
        at = np.searchsorted(sorted_names, wanted)
        result = np.empty(len(wanted), dtype=np.int64)
        for i, (name, j) in enumerate(zip(wanted, at, strict=True)):
            if j >= len(sorted_names) or sorted_names[j] != name:
                raise MissingRowsError(
                    f"name {name!r} is not in dataloader {dataloader_idx} of the store "
                    f"({len(sorted_names)} named rows there)"
                )
            if j + 1 < len(sorted_names) and sorted_names[j + 1] == name:
                same = self.index[positions[sorted_names == name]][:5].tolist()
                raise MissingRowsError(
                    f"name {name!r} is not unique in dataloader {dataloader_idx}: rows with "
                    f"indices {same} carry it; read them by index instead"
                )
            result[i] = positions[j]
        return result

    def names(self, positions: NDArray) -> list[str | None]:
        """The name of each row at ``positions``."""
        return self._name_column()[positions].tolist()

    def _name_column(self) -> NDArray:
        if self._name_col is None:
            self._name_col = self._read_names()
        return self._name_col

    def _read_names(self) -> NDArray:
        column = np.empty(len(self), dtype=object)
        by_part = np.argsort(self.part, kind="stable")
        bounds = np.flatnonzero(np.diff(self.part[by_part])) + 1
        for chunk in np.split(by_part, bounds):
            if not len(chunk):
                continue
            part = self._parts[self.part[chunk[0]]]
            names = read_part(self._fs, part, [NAME]).column(NAME).to_numpy(zero_copy_only=False)
            column[chunk] = names[self.row[chunk]]
        return column

    def _name_index(self) -> tuple[NDArray, NDArray]:
        if self._names is None:
            column = self._name_column()
            named = np.flatnonzero(np.array([n is not None for n in column], dtype=bool))
            order = np.argsort(column[named].astype(str), kind="stable")
            self._names = (column[named][order], named[order])
        return self._names


def integer_indices(indices: Any) -> NDArray:
    """``indices`` (a sequence or 1-D array of integers, or one integer) as int64.

    Booleans, floats, strings and arrays of more than one dimension are
    refused rather than converted: ``[True, False]`` or ``1.5`` is a mistake,
    not row 1.
    """
    if isinstance(indices, str | bytes):
        raise InvalidBatchError(f"indices must be integers, got the string {indices!r}")
    try:
        values = np.asarray(indices)
    except (ValueError, TypeError) as e:  # ragged nesting and the like
        raise InvalidBatchError(f"indices must be a 1-D sequence of integers ({e})") from None
    if values.ndim > 1:
        raise InvalidBatchError(
            f"indices must be one-dimensional, got an array of shape {values.shape}; "
            "flatten it first if that is what you mean"
        )
    if values.dtype == object and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)
        for v in values.reshape(-1)
    ):
        huge = [int(v) for v in values.reshape(-1) if not -(2**63) <= int(v) < 2**63]
        if huge:
            raise MissingRowsError(f"index {huge[0]} is not in the store (beyond int64)")
        values = values.astype(np.int64)
    if values.size == 0:
        return np.zeros(0, np.int64)
    if values.dtype.kind not in "iu":
        example = values.reshape(-1)[0]
        raise InvalidBatchError(
            f"indices must be integers, got {values.dtype} values such as {example!r}; "
            "pass dataset indices as ints (store.indices() lists them)"
        )
    if values.dtype.kind == "u" and values.size and int(values.max()) >= 2**63:
        raise MissingRowsError(f"index {int(values.max())} is not in the store (beyond int64)")
    return values.astype(np.int64, copy=False).reshape(-1)


class PartLocator:
    """Finds a few rows by index from the parts' index ranges in the manifest.

    Only parts whose range holds an index asked for are considered, in
    manifest order (the first committed row wins, as in :class:`RowIndex`);
    a part whose entry has an ``index_step`` is not even read.
    """

    def __init__(self, fs: FileSystem, manifest: StoreManifest) -> None:
        parts = manifest.parts
        self._fs, self._parts, self._coverage = fs, parts, manifest.coverage
        self._lows = np.array([p.index_min for p in parts], dtype=np.int64)
        self._highs = np.array([p.index_max for p in parts], dtype=np.int64)
        self._steps = np.array([p.index_step or 0 for p in parts], dtype=np.int64)
        self._loaders = np.array(
            [p.dataloaders[0] if len(p.dataloaders) == 1 else -1 for p in parts], dtype=np.int64
        )
        self._keys: dict[int, tuple[NDArray, NDArray]] = {}

    def locate(self, wanted: NDArray, dataloader_idx: int) -> tuple[NDArray, NDArray]:
        """The part and row of each index of ``wanted``, in the order asked."""
        part_of = np.empty(len(wanted), dtype=np.int64)
        row_of = np.empty(len(wanted), dtype=np.int64)
        missing = []
        loader = (self._loaders == dataloader_idx) | (self._loaders == -1)
        for at, index in enumerate(wanted.tolist()):
            near = np.flatnonzero(loader & (self._lows <= index) & (self._highs >= index))
            for part in near.tolist():
                row = self._row(part, index, dataloader_idx)
                if row is not None:
                    part_of[at], row_of[at] = part, row
                    break
            else:
                missing.append(index)
        if missing:
            held = self._coverage.get(dataloader_idx)
            lows, highs = self._lows[loader], self._highs[loader]
            span = f"{int(lows.min())}..{int(highs.max())}" if lows.size else "(none)"
            raise MissingRowsError(
                f"{len(missing)} of the {len(wanted)} indices asked are not in dataloader "
                f"{dataloader_idx} of the store (first: {missing[:5]}); it holds "
                f"{held.unique if held else 0} rows there, indices {span}"
            )
        return part_of, row_of

    def _row(self, part: int, index: int, dataloader_idx: int) -> int | None:
        step = int(self._steps[part])
        if step:
            offset = index - int(self._lows[part])
            return offset // step if offset % step == 0 else None
        if part not in self._keys:
            self._keys[part] = row_keys(self._fs, [self._parts[part]])
        loaders, indices = self._keys[part]
        hits = np.flatnonzero((indices == index) & (loaders == dataloader_idx))
        return int(hits[0]) if hits.size else None


def _range(keys: NDArray) -> str:
    return f"{int(keys[0])}..{int(keys[-1])}" if len(keys) else "(none)"
