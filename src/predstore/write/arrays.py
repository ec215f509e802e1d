"""Appending one key of one rank to its Zarr array, a whole shard at a time.

Each array is sharded along the sample axis. Data is written only in whole
shards, starting at a shard boundary, and every shard file is written once:
when a commit ends inside a shard, the rest of that shard stays unused and
the next commit starts at the next shard. Positions in the array are
therefore not contiguous across commits; each part records where its rows
start (fixed-shape keys) or each row's offset (ragged keys), and the rank
manifest records the committed extent.

A ragged key is one flat array of elements; its rows are located by the
hidden ``__offset__``/``__shape__`` columns of the part that holds them.
"""

from __future__ import annotations

import math
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from predstore.format import dtypes
from predstore.format.fs import FileSystem
from predstore.format.manifest import ArrayEntry
from predstore.format.schema import KeySchema
from predstore.format.shards import codecs_json, layout_of_array

NDArray = np.ndarray[Any, Any]


def pow2_floor(n: float) -> int:
    """The largest power of two not above ``n`` (at least 1)."""
    return 1 << max(0, math.floor(math.log2(n))) if n >= 1 else 1


class _ZarrAppender:
    """What fixed and ragged arrays share: the Zarr array, its files and its extent."""

    def __init__(
        self,
        fs: FileSystem,
        *,
        path: str,
        key: str,
        schema: KeySchema,
        write_id: str,
        rank: int,
        shard_len: int,
        chunk_len: int,
        compressors: list[Any],
        pool: Executor,
    ) -> None:
        self.fs, self.path, self.key, self.schema = fs, path, key, schema
        self.write_id, self.rank = write_id, rank
        self.dtype = dtypes.get(schema.dtype)
        self.shard_len = shard_len
        sample = () if schema.ragged else tuple(int(d) for d in schema.shape)  # type: ignore[arg-type]
        self.array = zarr.create_array(
            fs.zarr_store(path, read_only=False),
            shape=(0, *sample),
            dtype=self.dtype.zarr,
            chunks=(chunk_len, *sample),
            shards=(shard_len, *sample),
            compressors=compressors,
            fill_value=0,
            attributes={
                "predstore": {"key": key, "dtype": schema.dtype, "shape": list(schema.shape)}
            },
            config={"write_empty_chunks": True},
        )
        self._pool = pool
        self._layout = layout_of_array(self.array, shard_len)
        self.position = 0  # where the next sealed data goes: a shard boundary after each commit
        self.length = 0  # end of the data written so far
        self.payload_bytes = 0
        self.files: dict[str, int] = {}

    def _seal(self, data: NDArray) -> ShardWrite:
        """Reserve ``[position, position + len(data))`` for ``data``; the write happens later."""
        job = ShardWrite(self, data, self.position)
        self.position += len(data)
        return job

    def write_at(self, data: NDArray, start: int) -> None:
        """Write ``data`` at ``start`` (a shard boundary) and record the shard files it filled.

        Runs on the writer's commit thread; jobs run in the order they were sealed.
        """
        stop = start + len(data)
        if stop > self.array.shape[0]:
            self.array.resize((stop, *self.array.shape[1:]))
        zeros = (0,) * (self.array.ndim - 1)
        if self._layout is None:
            self.array[start:stop] = data
        for shard in range(start // self.shard_len, -(-stop // self.shard_len)):
            name = f"{self.path}/{self.array.metadata.encode_chunk_key((shard, *zeros))}"
            if self._layout is not None:
                first = shard * self.shard_len - start
                self._layout.write(self.fs, name, data[first : first + self.shard_len], self._pool)
            self.files[name] = self.fs.size(name)
        self.length = max(self.length, stop)
        self.payload_bytes += data.nbytes

    def _skip_to_shard(self) -> None:
        self.position = -(-self.position // self.shard_len) * self.shard_len

    def entry(self) -> ArrayEntry:
        """The extent written so far, as the rank manifest records it once its part commits."""
        return ArrayEntry(
            key=self.key,
            write_id=self.write_id,
            rank=self.rank,
            path=self.path,
            dtype=self.schema.dtype,
            zarr_dtype=str(self.dtype.zarr),
            length=self.length,
            shape=[self.length, *self.array.shape[1:]],
            chunks=list(self.array.chunks),
            shards=list(self.array.shards or self.array.chunks),
            codecs=codecs_json(self.array),
            payload_bytes=self.payload_bytes,
            files=dict(self.files),
        )


@dataclass(frozen=True)
class ShardWrite:
    """Data sealed for one array at a reserved position: compressed and written by :meth:`run`."""

    writer: _ZarrAppender
    data: NDArray
    start: int

    def run(self) -> None:
        self.writer.write_at(self.data, self.start)


class FixedArrayWriter(_ZarrAppender):
    """Rows of one fixed shape; the store writer commits before a part outgrows one shard.

    Two shard buffers alternate: one fills while the other is being written.
    """

    def __init__(self, fs: FileSystem, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self._buffers: list[NDArray] = []
        self._fill = 0

    @property
    def room(self) -> int:
        """Rows this part can still take before its shard is full."""
        return self.shard_len - self._fill

    def append(self, values: NDArray) -> None:
        if not self._buffers:
            shape = (self.shard_len, *self.array.shape[1:])
            self._buffers = [np.empty(shape, self.dtype.zarr), np.empty(shape, self.dtype.zarr)]
        self._buffers[0][self._fill : self._fill + len(values)] = self.dtype.to_zarr(values)
        self._fill += len(values)

    def seal(self) -> tuple[int, ShardWrite | None]:
        """The part's rows, to write: their start position, and the job (``None`` when empty).

        The job holds one of the two buffers; rows appended after the next
        seal go into it again, so that job must have run by then.
        """
        start = self.position
        job = self._seal(self._buffers[0][: self._fill]) if self._fill else None
        if job is not None:
            self._buffers.reverse()
        self._fill = 0
        self._skip_to_shard()
        return start, job


class RaggedArrayWriter(_ZarrAppender):
    """Rows of varying shape, appended to one flat array of elements."""

    def __init__(self, fs: FileSystem, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self._pending: list[NDArray] = []
        self._pending_len = 0
        self.payload_bytes_since_commit = 0

    def append(self, rows: list[NDArray]) -> tuple[NDArray, NDArray, ShardWrite | None]:
        """Buffer ``rows``: their offsets in the flat array, their shapes, and whole shards to write."""
        sizes = np.array([r.size for r in rows], dtype=np.int64)
        offsets = self.position + self._pending_len + np.concatenate(([0], np.cumsum(sizes)[:-1]))
        shapes = np.array([r.shape for r in rows], dtype=np.int64).reshape(len(rows), -1)
        self._pending.append(np.concatenate([self.dtype.to_zarr(np.ravel(r)) for r in rows]))
        self._pending_len += int(sizes.sum())
        self.payload_bytes_since_commit += int(sizes.sum()) * self.dtype.itemsize
        job = self._whole_shards() if self._pending_len >= self.shard_len else None
        return offsets.astype(np.int64), shapes, job

    def _whole_shards(self) -> ShardWrite:
        data = np.concatenate(self._pending)
        whole = len(data) // self.shard_len * self.shard_len
        self._pending = [data[whole:].copy()] if whole < len(data) else []
        self._pending_len = len(data) - whole
        return self._seal(data[:whole])

    def seal(self) -> ShardWrite | None:
        """Everything buffered, to write; the next commit starts at the next shard."""
        job = self._seal(np.concatenate(self._pending)) if self._pending_len else None
        self._pending, self._pending_len = [], 0
        self.payload_bytes_since_commit = 0
        self._skip_to_shard()
        return job
