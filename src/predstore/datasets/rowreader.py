"""Reading the values of many rows of one dataloader at once: what the datasets build on.

Rows are addressed by their *local position*: the rank of the row among
the dataloader's visible rows in index order. Parquet keys and names are
small by design: :meth:`RowReader.load` reads them whole into memory, as
numpy arrays and Arrow arrays (never one Python object per row, so a forked
DataLoader worker shares those pages with its parent instead of copying
them). Zarr keys are read through :class:`~predstore.read.arrays.ArrayReader`;
a fixed-shape key that fits the cache is decoded into one array as reads
need it (or all at once with ``load(zarr=True)``), any other keeps a cache
of recently decoded chunks.

A process that was forked from the one that built the reader gets a copy
through :meth:`RowReader.in_this_process`: the data loaded so far is shared,
the Zarr readers are opened anew.
"""

from __future__ import annotations

import copy
import mmap
import multiprocessing
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from predstore.datasets.arena import FORK
from predstore.format import dtypes
from predstore.format.dtypes import NDArray
from predstore.format.parquet import read_part
from predstore.format.schema import NAME, KeySchema, offset_column, part_schema, shape_column
from predstore.read.arrays import ArrayReader, Job, decode_into, decode_jobs
from predstore.read.values import from_arrow

if TYPE_CHECKING:
    from predstore.read.store import Store


class DenseArray:
    """A whole fixed-shape array decoded into memory as reads need it, chunk by chunk.

    Random reads then cost one fancy index instead of a lookup per chunk;
    memory pages are only touched once their chunk is decoded. The memory
    is shared with the processes forked from this one (DataLoader workers):
    whichever decodes a chunk first decodes it for all, and what they
    decoded stays with this process from one epoch's workers to the next.
    """

    def __init__(self, reader: ArrayReader) -> None:
        entry = reader.entry
        self.reader, self.chunk_len, self.length = reader, int(entry.chunks[0]), entry.length
        shape = (entry.length, *entry.shape[1:])
        self.data = _shared_zeros(shape, reader.dtype.zarr)
        self.have = _shared_zeros((-(-entry.length // self.chunk_len),), np.dtype(bool))
        # Orders a process's writes of a chunk before its flag, for the processes that
        # read the flag (a lock is a memory barrier on every architecture).
        self._lock = multiprocessing.get_context("fork").Lock() if FORK else threading.Lock()

    @staticmethod
    def nbytes(reader: ArrayReader) -> int:
        entry = reader.entry
        return entry.length * int(np.prod(entry.shape[1:])) * reader.dtype.itemsize

    def reopened(self) -> DenseArray:
        """The same decoded data, read further through a reader of this process."""
        twin = copy.copy(self)
        twin.reader = ArrayReader(self.reader.fs, self.reader.entry)
        return twin

    def rows(self, positions: NDArray) -> NDArray:
        chunks = np.unique(positions // self.chunk_len)
        with self._lock:
            missing = chunks[~self.have[chunks]]
        if missing.size:
            self._fill(missing)
        return self.reader.dtype.from_zarr(self.data[positions])

    def fill(self) -> None:
        """Decode every chunk not decoded yet."""
        with self._lock:
            missing = np.flatnonzero(~self.have)
        for start in range(0, len(missing), 64):  # bounded batches: memory stays flat
            self._fill(missing[start : start + 64])

    def _fill(self, missing: NDArray) -> None:
        # Two processes may decode the same chunk at once: they write the same bytes.
        decode_into(self.reader, missing.tolist(), self.data, 0)
        with self._lock:
            self.have[missing] = True


def _shared_zeros(shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray:
    """Zeros in memory that forked processes share (private memory where there is no fork)."""
    count = int(np.prod(shape))
    if not FORK or count == 0:
        return np.zeros(shape, dtype)
    memory = mmap.mmap(-1, count * dtype.itemsize, flags=mmap.MAP_SHARED)  # zero-filled, lazily
    return np.frombuffer(memory, dtype, count).reshape(shape)


Reader = ArrayReader | DenseArray


@dataclass
class _ZarrKey:
    """Where each local row of one Zarr key lives: which array, and where in it."""

    readers: list[Reader]
    array: NDArray  # per local row: index into ``readers``
    start: NDArray  # per local row: first position in the array
    shapes: NDArray | None = None  # ragged keys: per local row, its shape

    def reopened(self) -> _ZarrKey:
        readers: list[Reader] = [
            r.reopened()
            if isinstance(r, DenseArray)
            else ArrayReader(r.fs, r.entry, cache_bytes=r.cache_bytes)
            for r in self.readers
        ]
        return replace(self, readers=readers)


class RowReader:
    """Values of ``keys`` for rows of ``dataloader_idx`` of ``store``, many rows per call.

    ``cache_bytes`` of decoded Zarr values are kept, shared among the keys
    in proportion to their sizes.
    """

    def __init__(
        self, store: Store, keys: Sequence[str], dataloader_idx: int, *, cache_bytes: int
    ) -> None:
        self.store, self.keys = store, list(keys)
        self.cache_bytes = cache_bytes
        self.pid = os.getpid()
        rows = store.rows
        self.span = rows.dataloader(dataloader_idx)
        self.part = rows.part[self.span]
        self.row = rows.row[self.span]
        self.index = rows.index[self.span]
        self._parquet: dict[str, Any] = {}
        self._zarr: dict[str, _ZarrKey] = {}
        self._names: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def has_names(self) -> bool:
        return self.store.schema.names

    def storage_order(self) -> NDArray:
        """Local positions sorted as the rows lie in storage (part by part, row by row)."""
        return np.lexsort((self.row, self.part))

    def load(self, *, zarr: bool = False) -> None:
        """Read the Parquet keys and the names now, and set up the Zarr keys' caches (shared
        with the processes forked from here on); with ``zarr``, decode what fits them too."""
        keys = self.store.schema.keys
        parquet = [k for k in self.keys if keys[k].storage == "parquet" and k not in self._parquet]
        names = [NAME] if self.has_names and self._names is None else []
        if parquet or names:  # one read of each part for all of them
            columns = self._local_columns([*parquet, *names])
            for key in parquet:
                self._parquet_column(key, keys[key], columns[key])
            if names:
                self._names = columns[NAME]
        for key in self.keys:
            if keys[key].storage == "zarr":
                for reader in self._zarr_key(key, keys[key]).readers:
                    if zarr and isinstance(reader, DenseArray):
                        reader.fill()

    def in_this_process(self) -> RowReader:
        """This reader, or for a process forked since: a copy sharing what is loaded."""
        if self.pid == os.getpid():
            return self
        twin = copy.copy(self)
        twin.pid = os.getpid()
        twin._zarr = {k: z.reopened() for k, z in self._zarr.items()}
        twin._parquet, twin._names = dict(self._parquet), self._names
        return twin

    # -- reading ---------------------------------------------------------------

    def read(self, local: NDArray) -> dict[str, Any]:
        """For each key, the values of rows ``local`` in that order.

        Fixed-shape keys come as one array (masked where a Parquet key has
        nulls), strings as an object array, ragged keys as a list of arrays.
        """
        return {key: self.values(key, local) for key in self.keys}

    def values(self, key: str, local: NDArray) -> Any:
        spec = self.store.schema.keys[key]
        if spec.storage == "parquet":
            column = self._parquet_column(key, spec)
            if isinstance(column, pa.Array):  # strings
                return np.array(column.take(pa.array(local)).to_pylist(), dtype=object)
            if isinstance(column, list):
                return [column[i] for i in local.tolist()]
            return column[local]
        zarr = self._zarr_key(key, spec)
        if spec.ragged:
            return self._ragged(zarr, local)
        return self._fixed(zarr, spec, local)

    def plain(self, key: str) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
        """The shape and dtype of a row of ``key`` if its rows form one array (not strings,
        ragged values or values with nulls), else ``None``."""
        spec = self.store.schema.keys[key]
        if spec.dtype == dtypes.STRING or spec.ragged:
            return None
        if spec.storage == "parquet" and np.ma.isMA(self._parquet_column(key, spec)):
            return None
        return tuple(int(d) for d in spec.shape if d is not None), dtypes.get(spec.dtype).numpy

    def read_into(self, key: str, local: NDArray, out: NDArray) -> list[Job]:
        """Write the values of a :meth:`plain` key for rows ``local`` into ``out``.

        Rows that lie one after the other in one array are decoded straight
        into ``out``: that is left to the jobs returned, to be run (and
        :func:`~predstore.read.arrays.run_jobs` runs them in parallel) before ``out`` is read.
        """
        spec = self.store.schema.keys[key]
        if spec.storage == "parquet":
            np.take(self._parquet_column(key, spec), local, axis=0, out=out, mode="clip")
            return []
        zarr = self._zarr_key(key, spec)
        which, start = zarr.array[local], zarr.start[local]
        reader = zarr.readers[int(which[0])] if len(local) else None
        lo, n = (int(start[0]), len(start)) if len(local) else (0, 0)
        if (
            isinstance(reader, ArrayReader)
            and (which == which[0]).all()
            and np.array_equal(start, np.arange(lo, lo + n))
        ):
            length = int(reader.entry.chunks[0])
            chunks = list(range(lo // length, (lo + n - 1) // length + 1))
            return decode_jobs(reader, chunks, out.view(reader.dtype.zarr), lo)
        out[...] = self._fixed(zarr, spec, local)
        return []

    def name_array(self, local: NDArray) -> NDArray:
        """The names of rows ``local`` as an object array (``None`` for a row without one):
        made in one call, several times faster than a list of them."""
        names: NDArray = self._name_column().take(pa.array(local)).to_numpy(zero_copy_only=False)
        return names

    def _fixed(self, zarr: _ZarrKey, spec: KeySchema, local: NDArray) -> NDArray:
        which, start = zarr.array[local], zarr.start[local]
        if len(zarr.readers) == 1:
            return zarr.readers[0].rows(start)
        shape = tuple(int(d) for d in spec.shape if d is not None)
        out = np.empty((len(local), *shape), dtypes.get(spec.dtype).numpy)
        for k in np.unique(which).tolist():
            chosen = which == k
            out[chosen] = zarr.readers[k].rows(start[chosen])
        return out

    def _ragged(self, zarr: _ZarrKey, local: NDArray) -> list[NDArray]:
        assert zarr.shapes is not None
        which, start, shapes = zarr.array[local], zarr.start[local], zarr.shapes[local]
        sizes = shapes.prod(axis=1)
        out: list[NDArray] = [np.empty(0)] * len(local)
        for k in np.unique(which).tolist():
            chosen = np.flatnonzero(which == k)
            reader = zarr.readers[k]
            assert isinstance(reader, ArrayReader)
            for i, span in zip(
                chosen.tolist(), reader.spans(start[chosen], sizes[chosen]), strict=True
            ):
                out[i] = span.reshape(shapes[i])
        return out

    # -- loading, once per process (or once before forking) ---------------------------

    def _local_column(self, column: str) -> pa.Array:
        """One Parquet column for the local rows, in local order."""
        return self._local_columns([column])[column]

    def _local_columns(self, columns: list[str]) -> dict[str, pa.Array]:
        """Parquet columns for the local rows, in local order, read together part by part."""
        parts = self.store.manifest.parts
        used = np.unique(self.part).tolist()
        expected = part_schema(self.store.schema)
        tables = [read_part(self.store.fs, parts[p], columns, expected) for p in used]
        if not tables:
            return {c: pa.array([], expected.field(c).type) for c in columns}
        joined = pa.concat_tables(tables)
        first = np.zeros(len(parts), np.int64)
        first[used] = np.cumsum([0] + [parts[p].rows for p in used[:-1]])
        where = first[self.part] + self.row
        if not (len(where) == len(joined) and np.array_equal(where, np.arange(len(where)))):
            joined = joined.take(pa.array(where))  # else one write in index order: kept as is
        return {c: _one_chunk(joined.column(c)) for c in columns}

    def _parquet_column(self, key: str, spec: KeySchema, arrow: pa.Array | None = None) -> Any:
        column = self._parquet.get(key)
        if column is None:
            arrow = self._local_column(key) if arrow is None else arrow
            column = arrow if spec.dtype == dtypes.STRING else from_arrow(spec, arrow)
            self._parquet[key] = column
        return column

    def _name_column(self) -> pa.Array:
        if self._names is None:
            self._names = self._local_column(NAME)
        return self._names

    def _zarr_key(self, key: str, spec: KeySchema) -> _ZarrKey:
        found = self._zarr.get(key)
        if found is not None:
            return found
        manifest = self.store.manifest
        entries = [a for a in manifest.arrays if a.key == key]
        share = self._zarr_budget()
        readers: list[Reader] = []
        for a in entries:
            budget = int(share * a.payload_bytes)
            reader = ArrayReader(self.store.fs, a)
            # A fixed key stored uncompressed in local files is read in place (the page cache,
            # shared by every process, holds it); one that fits its share of the cache is
            # decoded whole, as reads need it; any other keeps its share of recent chunks.
            if (
                not spec.ragged
                and not reader.reads_in_place
                and DenseArray.nbytes(reader) <= budget
            ):
                readers.append(DenseArray(reader))
            else:
                readers.append(ArrayReader(self.store.fs, a, cache_bytes=budget))
        slot = {(a.write_id, a.rank): i for i, a in enumerate(entries)}
        parts = manifest.parts
        array_of_part = np.array([slot[(p.write_id, p.rank)] for p in parts], np.int32)
        if spec.ragged:
            start, shapes = self._ragged_locations(key, spec)
            found = _ZarrKey(readers, array_of_part[self.part], start, shapes)
        else:
            offset = np.array([p.array_offsets.get(key, 0) for p in parts], np.int64)
            found = _ZarrKey(readers, array_of_part[self.part], offset[self.part] + self.row)
        self._zarr[key] = found
        return found

    def _zarr_budget(self) -> float:
        """Cache bytes per payload byte, the same for every Zarr key read."""
        total = sum(a.payload_bytes for a in self.store.manifest.arrays if a.key in self.keys)
        return self.cache_bytes / total if total else 0.0

    def _ragged_locations(self, key: str, spec: KeySchema) -> tuple[NDArray, NDArray]:
        """Per local row: where its elements start in the flat array, and its shape."""
        start = self._local_column(offset_column(key)).to_numpy()
        flat = self._local_column(shape_column(key)).flatten().to_numpy()
        return start, flat.reshape(len(self), len(spec.shape))


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    # combine_chunks copies even a single chunk
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
