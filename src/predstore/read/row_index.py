"""The row index of a store: where each visible (dataloader_idx, index) lives.

Built once per opened store from the parts' index columns (8 bytes a row to
read; the dataloader column only of parts that hold more than one). It keeps
the sorted indices (8 bytes a row) and, unless the parts are already in key
order, each row's place in the parts' rows (4 bytes a row): the part and row
arrays the datasets use, the dataloader of each row and the names are built
only when first asked for. When a key was written more than once, the reader
sees the first committed row: the first in the manifest's part order, which
lists writes in commit order, then ranks, then each rank's parts in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from predstore.errors import InvalidBatchError, MissingRowsError
from predstore.format.coverage import row_keys
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import PartEntry, StoreManifest, check_stepped, stepped_indices
from predstore.format.parquet import check_size, read_part
from predstore.format.schema import DATALOADER, INDEX, NAME

#: Rows converted at a time from places among the parts' rows to (part, row): bounds the temporaries.
_CHUNK = 1 << 20


class RowIndex:
    """Visible rows sorted by (dataloader_idx, index), with their part and row within it."""

    def __init__(self, fs: FileSystem, manifest: StoreManifest) -> None:
        self._fs, self._parts = fs, manifest.parts
        sizes = np.array([p.rows for p in self._parts], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        part_dl = np.array([_single_dataloader(p) for p in self._parts], dtype=np.int64)
        index, dl = _read_keys(fs, self._parts, self._starts, part_dl)
        if dl is None and _in_key_order(index, part_dl, self._starts):
            # Each row is where the parts hold it: nothing to sort, no place to keep.
            self.index, self._place = index, None
            nonempty = sizes > 0
            loaders, at = np.unique(part_dl[nonempty], return_index=True)
            firsts = self._starts[:-1][nonempty][at]
        else:
            if dl is None and len(np.unique(part_dl)) > 1:
                dl = np.repeat(part_dl, sizes)
            self.index, self._place, dl = _sorted_first_rows(index, dl)
            if dl is None:
                loaders = np.unique(part_dl)[: 1 if len(self.index) else 0]
                firsts = np.zeros(len(loaders), dtype=np.int64)
            else:
                loaders, firsts = np.unique(dl, return_index=True)
        self._loaders = loaders.astype(np.int64)
        self._bounds = np.append(firsts, len(self.index)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def dataloader(self, dataloader_idx: int) -> slice:
        """The positions of one dataloader's rows, in index order."""
        at = np.searchsorted(self._loaders, dataloader_idx)
        if at == len(self._loaders) or self._loaders[at] != dataloader_idx:
            return slice(0, 0)
        return slice(int(self._bounds[at]), int(self._bounds[at + 1]))

    def dataloaders_of(self, positions: NDArray) -> NDArray:
        """The dataloader of each row at ``positions``."""
        return self._loaders[np.searchsorted(self._bounds, positions, side="right") - 1]

    @cached_property
    def dataloader_idx(self) -> NDArray:
        """The dataloader of every row (built on first use: the index keeps only the bounds)."""
        return np.repeat(self._loaders, np.diff(self._bounds))

    @cached_property
    def part(self) -> NDArray:
        """The part (its place in the manifest) of every row, as int32."""
        return self._build_locations()[0]

    @cached_property
    def row(self) -> NDArray:
        """The row within its part of every row, as int32."""
        return self._build_locations()[1]

    def locations(self, positions: NDArray) -> tuple[NDArray, NDArray]:
        """The part and the row within it of the rows at ``positions``."""
        if "part" in self.__dict__ and "row" in self.__dict__:
            return self.part[positions], self.row[positions]
        return self._split(self._places(positions))

    def _places(self, positions: NDArray) -> NDArray:
        """Where the rows at ``positions`` are among all the parts' rows, in manifest order."""
        positions = np.asarray(positions, dtype=np.int64)
        return positions if self._place is None else self._place[positions].astype(np.int64)

    def _split(self, places: NDArray) -> tuple[NDArray, NDArray]:
        part = np.searchsorted(self._starts, places, side="right") - 1
        return part.astype(np.int32), (places - self._starts[part]).astype(np.int32)

    def _build_locations(self) -> tuple[NDArray, NDArray]:
        if "part" in self.__dict__ and "row" in self.__dict__:
            return self.part, self.row
        part, row = np.empty(len(self), np.int32), np.empty(len(self), np.int32)
        for start in range(0, len(self), _CHUNK):
            span = np.arange(start, min(start + _CHUNK, len(self)))
            part[span[0] : span[-1] + 1], row[span[0] : span[-1] + 1] = self._split(
                self._places(span)
            )
        self.__dict__["part"], self.__dict__["row"] = part, row
        return part, row

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
        wanted = list(names)
        span = self.dataloader(dataloader_idx)
        hashes, positions = self._name_index()
        asked = _hash_names(wanted)
        lows = np.searchsorted(hashes, asked, side="left")
        highs = np.searchsorted(hashes, asked, side="right")
        candidates = [
            positions[lo:hi] for lo, hi in zip(lows.tolist(), highs.tolist(), strict=True)
        ]
        candidates = [c[(c >= span.start) & (c < span.stop)] for c in candidates]
        # Equal hashes are not equal names: compare the names themselves.
        flat = np.concatenate(candidates) if candidates else np.zeros(0, np.int64)
        found = iter(self.names(flat))
        result = np.empty(len(wanted), dtype=np.int64)
        for i, (name, near) in enumerate(zip(wanted, candidates, strict=True)):
            same = near[np.array([next(found) == name for _ in range(len(near))], dtype=bool)]
            if len(same) == 0:
                named = np.count_nonzero((positions >= span.start) & (positions < span.stop))
                raise MissingRowsError(
                    f"name {name!r} is not in dataloader {dataloader_idx} of the store "
                    f"({named} named rows there)"
                )
            if len(same) > 1:
                raise MissingRowsError(
                    f"name {name!r} is not unique in dataloader {dataloader_idx}: rows with "
                    f"indices {np.sort(self.index[same])[:5].tolist()} carry it; read them by "
                    "index instead"
                )
            result[i] = same[0]
        return result

    def names(self, positions: NDArray) -> list[str | None]:
        """The name of each row at ``positions``."""
        places = pa.array(self._places(np.asarray(positions, dtype=np.int64)))
        names: list[str | None] = self._name_column.take(places).to_pylist()
        return names

    @cached_property
    def _name_column(self) -> pa.Array:
        """Every part's names, in manifest order (the rows hidden by an earlier copy included)."""
        columns = [read_part(self._fs, part, [NAME]).column(NAME) for part in self._parts]
        chunks = [chunk for column in columns for chunk in column.chunks]
        return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())

    def _name_index(self) -> tuple[NDArray, NDArray]:
        """The hashes of the visible rows' names, sorted, and the position of each."""
        if "_names" not in self.__dict__:
            column = pl.Series(self._name_column)
            places = self._places(np.arange(len(self)))
            named = np.flatnonzero(column.is_not_null().to_numpy()[places])
            hashes = column.hash().to_numpy()[places[named]]
            order = pl.Series(hashes).arg_sort().to_numpy()  # threads; numpy's sort has none
            self.__dict__["_names"] = (hashes[order], named[order])
        names: tuple[NDArray, NDArray] = self.__dict__["_names"]
        return names


def _hash_names(names: list[str]) -> NDArray:
    """The same hash as :meth:`RowIndex._name_index` gives each name (refusing non-strings)."""
    odd = [n for n in names if not isinstance(n, str)]
    if odd:
        raise InvalidBatchError(f"names must be strings, got {odd[0]!r}")
    return pl.Series(names, dtype=pl.String).hash().to_numpy()


def _single_dataloader(part: PartEntry) -> int:
    """The one dataloader a part holds; -1 when it holds several (its column is read)."""
    return part.dataloaders[0] if len(part.dataloaders) == 1 else -1


def _read_keys(
    fs: FileSystem, parts: Sequence[PartEntry], starts: NDArray, part_dl: NDArray
) -> tuple[NDArray, NDArray | None]:
    """Every part's indices in manifest order, read into one array; the dataloaders too, per
    row, only when a part holds more than one (else ``part_dl`` says them)."""
    index = np.empty(int(starts[-1]), dtype=np.int64)
    dl = np.repeat(part_dl, np.diff(starts)) if (part_dl < 0).any() else None
    for p, part in enumerate(parts):
        lo, hi = int(starts[p]), int(starts[p + 1])
        if part.index_step is not None:
            index[lo:hi] = stepped_indices(part)
            continue
        check_size(fs, part)
        several = part_dl[p] < 0
        table = read_part(fs, part, [DATALOADER, INDEX] if several else [INDEX])
        index[lo:hi] = table.column(INDEX).to_numpy()
        if several:
            dl[lo:hi] = table.column(DATALOADER).to_numpy()  # type: ignore[index]
    return index, dl


def _in_key_order(index: NDArray, part_dl: NDArray, starts: NDArray) -> bool:
    """Whether the rows, as the parts hold them, already rise strictly by (dataloader, index)."""
    nonempty = np.flatnonzero(np.diff(starts) > 0)
    dls = part_dl[nonempty]
    if (np.diff(dls) < 0).any():
        return False
    rising = index[1:] > index[:-1]
    # Between two parts of different dataloaders the index may fall.
    rising[starts[nonempty[1:]][np.diff(dls) > 0] - 1] = True
    return bool(rising.all())


def _sorted_first_rows(
    index: NDArray, dl: NDArray | None
) -> tuple[NDArray, NDArray, NDArray | None]:
    """The keys sorted, each kept once (its first row in manifest order), and where each was."""
    # Stable sorts: equal keys keep manifest order, so the first of them is the committed one.
    order = np.argsort(index, kind="stable") if dl is None else np.lexsort((index, dl))
    index = index[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = index[1:] != index[:-1]
    if dl is not None:
        dl = dl[order]
        first[1:] |= dl[1:] != dl[:-1]
    place_type = np.int32 if len(order) < 2**31 else np.int64
    if first.all():
        return index, order.astype(place_type), dl
    return index[first], order[first].astype(place_type), None if dl is None else dl[first]


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
            check_stepped(self._parts[part])
            offset = index - int(self._lows[part])
            return offset // step if offset % step == 0 else None
        if part not in self._keys:
            self._keys[part] = row_keys(self._fs, [self._parts[part]])
        loaders, indices = self._keys[part]
        hits = np.flatnonzero((indices == index) & (loaders == dataloader_idx))
        return int(hits[0]) if hits.size else None


def _range(keys: NDArray) -> str:
    return f"{int(keys[0])}..{int(keys[-1])}" if len(keys) else "(none)"
