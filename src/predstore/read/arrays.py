"""Reading rows of Zarr keys, touching only the chunks that hold them.

Arrays are read in predstore's own shard layout
(:mod:`predstore.format.shards`), through the store's
:class:`~predstore.format.fs.FileSystem`: the shard's index, then only the
inner chunks needed, each checked against its crc32c, decoded in parallel
and optionally kept in a small cache of decoded chunks (what a Dataset
reading in random order needs). On a local disk the shards are mapped
read-only: chunks are decoded straight from the page cache, and a chunk
stored uncompressed is used in place, a view of its file. An array whose ``zarr.json`` declares any
other layout is refused, and nothing past the committed extent is ever read.
"""

from __future__ import annotations

import functools
import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from predstore.errors import CorruptStoreError
from predstore.format import dtypes
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import ArrayEntry
from predstore.format.shards import ABSENT, ShardLayout, read_layout, shard_key

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def decode_pool() -> ThreadPoolExecutor:
    """This process's pool of chunk decoders (a forked DataLoader worker makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (
                os.getpid(),
                ThreadPoolExecutor(
                    max(2, os.cpu_count() or 2), thread_name_prefix="predstore-decode"
                ),
            )
        return _pool[1]


class ArrayReader:
    """One committed Zarr array, opened on first use.

    ``cache_bytes`` keeps that many bytes of decoded chunks, most recently
    used first, so reads in random order decode each chunk about once.
    """

    def __init__(self, fs: FileSystem, entry: ArrayEntry, *, cache_bytes: int = 0) -> None:
        self.fs, self.entry = fs, entry
        self.dtype = dtypes.get(entry.dtype)
        self.cache_bytes = cache_bytes
        self._layout: ShardLayout | None = None
        self._indices: dict[int, NDArray] = {}
        self._cache: OrderedDict[int, NDArray] = OrderedDict()
        self._cached = 0
        self._maps: dict[int, memoryview | None] = {}
        self._mapped: dict[int, NDArray] = {}  # chunks that are views of a mapped shard
        # Per chunk used in place: its shard file's window (index into _windows, -1: not one
        # such chunk) and its byte offset in that file.
        self._place: NDArray | None = None
        self._windows: list[NDArray] = []
        self._window_of: dict[int, int] = {}  # id of a mapped file -> its window

    def __getstate__(self) -> dict[str, Any]:
        # Pickle the description only: a worker process opens its own files.
        return {"fs": self.fs, "entry": self.entry, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fs"], state["entry"], cache_bytes=state["cache_bytes"])  # type: ignore[misc]

    @property
    def layout(self) -> ShardLayout:
        """The array's shard layout, read from its ``zarr.json`` on first use and checked."""
        if self._layout is None:
            self._layout = read_layout(self.fs, self.entry)
        return self._layout

    @property
    def reads_in_place(self) -> bool:
        """Whether this array's full chunks are read in place from the page cache: stored
        uncompressed in files that are mapped, each is a view of its file, checked once."""
        return self.fs.can_map and self.layout.stores_raw

    def shard_path(self, shard: int) -> str:
        """The store path of shard number ``shard``."""
        return f"{self.entry.path}/{shard_key(shard, len(self.entry.shape))}"

    # -- reading ---------------------------------------------------------------

    def rows(self, positions: NDArray) -> NDArray:
        """The rows at ``positions`` (in that order), as the logical dtype."""
        return self.dtype.from_zarr(self._take(np.asarray(positions, dtype=np.int64)))

    def spans(self, starts: NDArray, sizes: NDArray) -> list[NDArray]:
        """For a flat (ragged) array: the elements ``[start, start + size)`` of each row."""
        if not len(starts):
            return []
        lo, hi = int(starts.min()), int((starts + sizes).max())
        if int(sizes.sum()) * 4 >= hi - lo:  # dense enough: read the whole range once
            data = self.dtype.from_zarr(self._range(lo, hi))
            return [
                data[s - lo : s - lo + n]
                for s, n in zip(starts.tolist(), sizes.tolist(), strict=True)
            ]
        return [
            self.dtype.from_zarr(self._range(int(s), int(s + n)))
            for s, n in zip(starts, sizes, strict=True)
        ]

    def _take(self, positions: NDArray) -> NDArray:
        if not len(positions):
            return np.zeros((0, *self.entry.shape[1:]), self.dtype.zarr)
        lo, hi = int(positions.min()), int(positions.max()) + 1
        self._check_bounds(lo, hi)
        if hi - lo == len(positions) and np.array_equal(positions, np.arange(lo, hi)):
            return self._range(lo, hi)
        return self._gather(positions)

    def _range(self, lo: int, hi: int) -> NDArray:
        self._check_bounds(lo, hi)
        layout = self.layout
        if hi <= lo:
            return np.zeros((0, *self.entry.shape[1:]), self.dtype.zarr)
        first, last = lo // layout.chunk_len, (hi - 1) // layout.chunk_len
        chunks = self._chunks(np.arange(first, last + 1))
        joined = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        start = lo - first * layout.chunk_len
        return joined[start : start + hi - lo]

    def _gather(self, positions: NDArray) -> NDArray:
        length = self.layout.chunk_len
        out = np.empty((len(positions), *self.entry.shape[1:]), self.dtype.zarr)
        if length == 1 and not self.reads_in_place:
            # One row a chunk (volumes): each is decoded straight into its place in ``out``.
            # A reader that caches holds a key too large to decode whole, so in random order
            # a cached row would seldom be read again before it is dropped.
            run_jobs(self._row_jobs(positions.tolist(), out))
            return out
        todo = self._gather_mapped(positions, np.arange(len(positions)), out)
        if not todo.size:
            return out
        chunk_of = positions[todo] // length
        needed, where = np.unique(chunk_of, return_inverse=True)
        chunks = self._chunks(needed)  # checks and maps those stored uncompressed
        rest = np.searchsorted(todo, self._gather_mapped(positions, todo, out))
        for k in np.unique(where[rest]).tolist():
            group = rest[where[rest] == k]
            out[todo[group]] = chunks[k][positions[todo[group]] - needed[k] * length]
        return out

    def _gather_mapped(self, positions: NDArray, at: NDArray, out: NDArray) -> NDArray:
        """Rows ``positions[at]`` that lie in chunks used in place into ``out[at]``; the
        ``at`` left to do.

        A chunk's rows are contiguous in its file, so a row is a run of bytes at a known
        offset: indexing a window view of the file (every byte offset a row) gathers them
        all at once, one fancy index per shard file.
        """
        if self._place is None or not at.size:
            return at
        length = self.layout.chunk_len
        wanted = positions[at]
        chunk_of = wanted // length
        slot = self._place[chunk_of, 0]
        known = slot >= 0
        left = at[~known]
        if left.size:
            at, wanted, chunk_of, slot = at[known], wanted[known], chunk_of[known], slot[known]
        target = out.reshape(len(out), -1).view(np.uint8)
        start = self._place[chunk_of, 1] + (wanted - chunk_of * length) * target.shape[1]
        # Not np.take(window, ...): it copies a strided input whole first (a shard times a row).
        for s, window in enumerate(self._windows):
            chosen = slot == s
            target[at[chosen]] = window[start[chosen]]
        return left

    def _row_jobs(self, positions: list[int], out: NDArray) -> list[Job]:
        """Jobs decoding chunk ``positions[i]`` (of one row each) into ``out[i]``; the shards'
        indices are looked up once for all of them."""
        missing = []
        for at, position in enumerate(positions):
            cached = self._cache.get(position)
            if cached is None:
                missing.append(at)
            else:
                out[at] = cached[0]
        missing.sort(key=positions.__getitem__)  # the raw chunks come shard by shard
        chunks = [positions[at] for at in missing]
        raws = self._raw_chunks(chunks)
        layout = self.layout

        def decode(at: int, chunk: int, raw: Any) -> None:
            if raw is None:  # a chunk never written holds the fill value
                out[at] = 0
            else:
                layout.decode_into(raw, out[at : at + 1], self.where(chunk))

        return [
            functools.partial(decode, at, chunk, raw)
            for at, chunk, raw in zip(missing, chunks, raws, strict=True)
        ]

    def _chunks(self, chunk_ids: NDArray) -> list[NDArray]:
        """Decoded inner chunks ``chunk_ids`` (sorted), from the cache or the shard files."""
        result: dict[int, NDArray] = {}
        missing = []
        for c in chunk_ids.tolist():
            hit = self._mapped.get(c)
            if hit is not None:
                result[c] = hit
                continue
            hit = self._cache.get(c)
            if hit is not None:
                self._cache.move_to_end(c)
                result[c] = hit
            else:
                missing.append(c)
        if missing:
            for c, chunk in zip(missing, self._read_chunks(missing), strict=True):
                result[c] = chunk
                self._remember(c, chunk)
        return [result[c] for c in chunk_ids.tolist()]

    def _read_chunks(self, chunk_ids: list[int]) -> list[NDArray]:
        layout = self.layout
        raws = self._raw_chunks(chunk_ids)
        zeros = np.zeros((layout.chunk_len, *layout.sample), layout.dtype)

        def decode(chunk: int, raw: Any) -> NDArray:
            return zeros if raw is None else layout.decode(raw, self.where(chunk))

        if len(raws) == 1:
            return [decode(chunk_ids[0], raws[0])]
        return list(decode_pool().map(decode, chunk_ids, raws))

    def where(self, chunk: int) -> str:
        """Inner chunk ``chunk`` as errors name it: its shard file and its number there."""
        per_shard = self.layout.chunks_per_shard
        return (
            f"shard {self.shard_path(chunk // per_shard)} of key {self.entry.key!r}, "
            f"inner chunk {chunk % per_shard}"
        )

    def _raw_chunks(self, chunk_ids: list[int]) -> list[Any]:
        """The encoded bytes of inner chunks ``chunk_ids`` (``None`` for an absent chunk)."""
        layout = self.layout
        per_shard = layout.chunks_per_shard
        raws: list[Any] = []
        by_shard: dict[int, list[int]] = {}
        for c in chunk_ids:
            by_shard.setdefault(c // per_shard, []).append(c)
        for shard, ids in by_shard.items():
            path, size = self._shard_file(shard)
            index = self._index(shard, path, size)
            local = np.array(ids) % per_shard
            offsets, lengths = index[local, 0], index[local, 1]
            present = offsets != ABSENT
            mapped = self._map(shard, path, size)
            if mapped is not None:
                raws.extend(
                    mapped[o : o + n] if p else None
                    for o, n, p in zip(offsets.tolist(), lengths.tolist(), present, strict=True)
                )
                continue
            if not present.any():
                raws.extend([None] * len(ids))
                continue
            lo = int(offsets[present].min())
            hi = int((offsets[present] + lengths[present]).max())
            if int(lengths[present].sum()) * 2 >= hi - lo:  # most of a range: one read
                block = memoryview(self.fs.read_range(path, lo, hi - lo))
                raws.extend(
                    block[o - lo : o - lo + n] if p else None
                    for o, n, p in zip(offsets.tolist(), lengths.tolist(), present, strict=True)
                )
            else:  # scattered chunks: one request each, in parallel on an object store
                wanted = iter(
                    self.fs.read_ranges(path, offsets[present].tolist(), lengths[present].tolist())
                )
                raws.extend(next(wanted) if p else None for p in present)
        return raws

    def _shard_file(self, shard: int) -> tuple[str, int]:
        path = self.shard_path(shard)
        size = self.entry.files.get(path)
        if size is None:
            raise CorruptStoreError(
                f"array {self.entry.path}: shard {path} holds committed rows but is not listed"
            )
        return path, size

    def _map(self, shard: int, path: str, size: int) -> memoryview | None:
        """Shard ``shard`` mapped into memory, or ``None`` where the file system cannot map."""
        if shard not in self._maps:
            mapped = self.fs.map_file(path) if self.fs.can_map else None
            if mapped is not None and len(mapped) != size:
                raise CorruptStoreError(
                    f"shard {path} has {len(mapped)} bytes, the manifest says {size}"
                )
            self._maps[shard] = mapped
        return self._maps[shard]

    def _index(self, shard: int, path: str, size: int) -> NDArray:
        index = self._indices.get(shard)
        if index is None:
            layout = self.layout
            try:
                actual = self.fs.size(path)
            except FileNotFoundError:
                raise CorruptStoreError(
                    f"array {self.entry.path}: shard {path} is missing"
                ) from None
            if actual != size:
                raise CorruptStoreError(
                    f"shard {path} has {actual} bytes, the manifest says {size}"
                )
            index = layout.read_index(self.fs, path, size)
            present = index[:, 0] != ABSENT
            if present.any() and (
                int((index[present, 0] + index[present, 1]).max()) > size - layout.index_bytes
                or (layout.checksum and int(index[present, 1].min()) < 4)
            ):
                raise CorruptStoreError(
                    f"shard {path}: its index points outside the file's data; the file is "
                    "damaged (predstore verify --deep lists every damaged file)"
                )
            self._indices[shard] = index
        return index

    def _remember(self, chunk_id: int, chunk: NDArray) -> None:
        mapping = _mapping_of(chunk)
        if mapping is not None:
            self._mapped[chunk_id] = chunk  # the page cache holds it: it costs no memory here
            self._note_place(chunk_id, chunk, mapping)
            return
        if chunk.nbytes > self.cache_bytes:
            return
        self._cache[chunk_id] = chunk
        self._cached += chunk.nbytes
        while self._cached > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes

    def _note_place(self, chunk_id: int, chunk: NDArray, mapping: mmap.mmap) -> None:
        """Where the rows of a chunk used in place lie, for :meth:`_gather_mapped`."""
        window = self._window_of.get(id(mapping))
        if window is None:
            data = np.frombuffer(mapping, np.uint8)
            row_bytes = chunk.nbytes // max(len(chunk), 1)
            self._windows.append(
                np.lib.stride_tricks.as_strided(
                    data, (data.size - row_bytes + 1, row_bytes), (1, 1), writeable=False
                )
            )
            window = self._window_of[id(mapping)] = len(self._windows) - 1
        if self._place is None:
            chunks = -(-self.entry.length // self.layout.chunk_len)
            self._place = np.full((chunks, 2), -1, np.int64)
        base = self._windows[window].ctypes.data
        self._place[chunk_id] = (window, chunk.ctypes.data - base)

    def _check_bounds(self, lo: int, hi: int) -> None:
        if lo < 0 or hi > self.entry.length:
            raise CorruptStoreError(
                f"array {self.entry.path}: a part refers to positions {lo}..{hi - 1}, "
                f"outside its committed extent {self.entry.length}"
            )


def _mapping_of(array: NDArray) -> mmap.mmap | None:
    """The mapped file that ``array`` is a view of, if it is one."""
    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap) else None


Job = Callable[[], None]


def decode_into(reader: ArrayReader, chunk_ids: list[int], out: NDArray, lo: int) -> None:
    """Decode the rows of chunks ``chunk_ids`` that fall in ``out``, which holds rows from ``lo``.

    Whole chunks are decoded straight into ``out`` (C-contiguous, the
    array's on-disk dtype), on the decode pool: no memory is allocated for
    them, which matters where touching new memory is slow. A chunk cut by
    an end of ``out`` goes through a temporary.
    """
    run_jobs(decode_jobs(reader, chunk_ids, out, lo))


def run_jobs(jobs: list[Job]) -> None:
    """Run ``jobs`` (each releases the GIL for most of its time) on the decode pool."""
    if len(jobs) == 1:
        jobs[0]()
    elif jobs:
        list(decode_pool().map(lambda job: job(), jobs))


def decode_jobs(reader: ArrayReader, chunk_ids: list[int], out: NDArray, lo: int) -> list[Job]:
    """What :func:`decode_into` does, as one job per chunk (the shards are read here)."""
    hi = lo + len(out)
    layout, length = reader.layout, int(reader.entry.chunks[0])
    spans = [
        (c, max(lo, c * length), min(hi, (c + 1) * length, reader.entry.length)) for c in chunk_ids
    ]
    for _, a, b in spans:
        reader._check_bounds(a, b)

    def decode(c: int, a: int, b: int, raw: Any) -> None:
        target = out[a - lo : b - lo]
        if raw is None:  # a chunk never written holds the fill value
            target[...] = 0
        elif b - a == length:
            layout.decode_into(raw, target, reader.where(c))
        else:
            target[...] = layout.decode(raw, reader.where(c))[a - c * length : b - c * length]

    raws = reader._raw_chunks(chunk_ids)
    return [
        functools.partial(decode, c, a, b, raw) for (c, a, b), raw in zip(spans, raws, strict=True)
    ]
