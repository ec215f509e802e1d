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
from typing import Any

import numpy as np
import zarr

from predstore.format import dtypes
from predstore.format.fs import FileSystem
from predstore.format.manifest import ArrayEntry
from predstore.format.schema import KeySchema

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
        self.position = 0  # where the next data goes: always a shard boundary after a commit
        self.length = 0  # end of the data written so far
        self.payload_bytes = 0
        self.files: dict[str, int] = {}

    def _write(self, data: NDArray) -> None:
        """Write ``data`` at the current position, which is a shard boundary."""
        start, stop = self.position, self.position + len(data)
        self.array.resize((stop, *self.array.shape[1:]))
        self.array[start:stop] = data
        zeros = (0,) * (self.array.ndim - 1)
        for shard in range(start // self.shard_len, -(-stop // self.shard_len)):
            name = f"{self.path}/{self.array.metadata.encode_chunk_key((shard, *zeros))}"
            self.files[name] = self.fs.size(name)
        self.position = self.length = stop
        self.payload_bytes += data.nbytes

    def _skip_to_shard(self) -> None:
        self.position = -(-self.position // self.shard_len) * self.shard_len

    def entry(self) -> ArrayEntry:
        """The committed extent, as the rank manifest records it."""
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
            codecs=_json(self.array.metadata.to_dict()["codecs"]),
            payload_bytes=self.payload_bytes,
            files=dict(self.files),
        )


class FixedArrayWriter(_ZarrAppender):
    """Rows of one fixed shape; the writer commits before a part outgrows one shard."""

    def __init__(self, fs: FileSystem, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self._buffer: NDArray | None = None
        self._fill = 0

    @property
    def room(self) -> int:
        """Rows this part can still take before its shard is full."""
        return self.shard_len - self._fill

    def append(self, values: NDArray) -> None:
        if self._buffer is None:
            self._buffer = np.empty((self.shard_len, *self.array.shape[1:]), self.dtype.zarr)
        self._buffer[self._fill : self._fill + len(values)] = self.dtype.to_zarr(values)
        self._fill += len(values)

    def commit(self) -> int:
        """Write the part's rows; return the array position of its first row."""
        start = self.position
        if self._fill and self._buffer is not None:
            self._write(self._buffer[: self._fill])
            self._fill = 0
        self._skip_to_shard()
        return start


class RaggedArrayWriter(_ZarrAppender):
    """Rows of varying shape, appended to one flat array of elements."""

    def __init__(self, fs: FileSystem, **kwargs: Any) -> None:
        super().__init__(fs, **kwargs)
        self._pending: list[NDArray] = []
        self._pending_len = 0
        self.payload_bytes_since_commit = 0

    def append(self, rows: list[NDArray]) -> tuple[NDArray, NDArray]:
        """Buffer ``rows``; return their offsets in the flat array and their shapes."""
        sizes = np.array([r.size for r in rows], dtype=np.int64)
        offsets = self.position + self._pending_len + np.concatenate(([0], np.cumsum(sizes)[:-1]))
        shapes = np.array([r.shape for r in rows], dtype=np.int64).reshape(len(rows), -1)
        self._pending.append(np.concatenate([self.dtype.to_zarr(np.ravel(r)) for r in rows]))
        self._pending_len += int(sizes.sum())
        self.payload_bytes_since_commit += int(sizes.sum()) * self.dtype.itemsize
        if self._pending_len >= self.shard_len:
            self._write_whole_shards()
        return offsets.astype(np.int64), shapes

    def _write_whole_shards(self) -> None:
        data = np.concatenate(self._pending)
        whole = len(data) // self.shard_len * self.shard_len
        self._write(data[:whole])
        self._pending = [data[whole:].copy()] if whole < len(data) else []
        self._pending_len = len(data) - whole

    def commit(self) -> None:
        if self._pending_len:
            self._write(np.concatenate(self._pending))
            self._pending, self._pending_len = [], 0
        self.payload_bytes_since_commit = 0
        self._skip_to_shard()


def _json(value: Any) -> Any:
    """Zarr's codec description with tuples turned into lists, as JSON holds it."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value
