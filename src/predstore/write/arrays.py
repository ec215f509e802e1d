"""Appending one key of one rank to its Zarr array, chunk by chunk.

Each array is sharded along its first axis. Rows fill an inner chunk; a
full chunk is compressed on the encoder pool and appended to the current
shard file, which is closed (its index written, then renamed into place)
when its last chunk arrives or when the part commits. Memory holds one
chunk being filled and a bounded number being compressed, whatever the
shard size.

Every shard file is written once. When a commit ends inside a shard, the
rest of that shard stays unused and the next rows start at the next
shard; so positions in an array are not contiguous across commits: each
part records where its rows start (fixed-shape keys) or each row's offset
(ragged keys), and the rank manifest records the committed extent.

A ragged key is one flat array of elements (its first axis counts
elements); its rows are located by the hidden ``__offset__``/``__shape__``
columns of the part that holds them.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Executor, Future
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from predstore.format import dtypes
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import ArrayEntry
from predstore.format.schema import KeySchema
from predstore.format.shards import ShardFile, codecs_json, layout_of_array
from predstore.write.jobs import OrderedJobs


def pow2_floor(n: float) -> int:
    """The largest power of two not above ``n`` (at least 1)."""
    return 1 << max(0, math.floor(math.log2(n))) if n >= 1 else 1


class ArrayStream:
    """One key of one rank: its Zarr array, filled chunk by chunk.

    :meth:`append` and :meth:`seal` run on the caller's thread; everything
    that touches files runs as ``jobs``, in order, after the chunks they need.
    """

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
        encoders: Executor,
        jobs: OrderedJobs,
        in_flight: threading.Semaphore,
    ) -> None:
        self.fs, self.path, self.key, self.schema = fs, path, key, schema
        self.write_id, self.rank = write_id, rank
        self.dtype = dtypes.get(schema.dtype)
        self.shard_len, self.chunk_len = shard_len, chunk_len
        self.sample = () if schema.ragged else tuple(int(d) for d in schema.shape)  # type: ignore[arg-type]
        self.array = zarr.create_array(
            fs.zarr_store(path, read_only=False),
            shape=(0, *self.sample),
            dtype=self.dtype.zarr,
            chunks=(chunk_len, *self.sample),
            shards=(shard_len, *self.sample),
            compressors=[*compressors, Crc32cCodec()],  # every inner chunk checksummed
            fill_value=0,
            attributes={
                "predstore": {"key": key, "dtype": schema.dtype, "shape": list(schema.shape)}
            },
            config={"write_empty_chunks": True},
        )
        layout = layout_of_array(self.array, shard_len)
        if layout is None:  # only on a big-endian machine
            raise NotImplementedError(
                f"predstore writes its shard layout on little-endian machines only ({path})"
            )
        self._layout = layout
        self._encoders, self._jobs, self._in_flight = encoders, jobs, in_flight
        # The caller's side: the chunk being filled, and where the next row goes.
        self._chunk: NDArray | None = None
        self._fill = 0
        self.position = 0
        # The jobs' side: the open shard, and what is written.
        self._shard: ShardFile | None = None
        self._shard_no = -1
        self._end = 0  # end of the data added to shards
        self.length = 0  # end of the data in closed shards: the committed extent
        self.payload_bytes = 0
        self.files: dict[str, int] = {}
        self.checksums: dict[str, int] = {}

    # -- the caller's side ---------------------------------------------------------

    def append(self, values: NDArray, *, lent: bool = False) -> int:
        """Add rows (for a ragged key: flat elements); return the position of the first.

        ``lent``: the caller keeps ``values`` unchanged until every job submitted so far has
        run, so whole chunks of them are encoded where they are instead of being copied.
        """
        start = self.position
        data = self.dtype.to_zarr(values)
        done = 0
        while done < len(data):
            take = min(self.chunk_len - self._fill, len(data) - done)
            if lent and take == self.chunk_len:  # a whole chunk: encoded from the caller's rows
                self._chunk = data[done : done + take]
            else:
                if self._chunk is None:
                    self._chunk = np.empty((self.chunk_len, *self.sample), self.dtype.zarr)
                self._chunk[self._fill : self._fill + take] = data[done : done + take]
            self._fill += take
            done += take
            self.position += take
            if self._fill == self.chunk_len:
                self._emit()
        return start

    def seal(self) -> None:
        """End the part: write what is buffered, close the shard, move to the next shard."""
        if self._fill:
            self._emit()
        self._jobs.submit(self._close_shard)
        self.position = -(-self.position // self.shard_len) * self.shard_len

    def _emit(self) -> None:
        """Hand the filled chunk to the encoders, and its writing to the jobs."""
        assert self._chunk is not None
        rows, chunk = self._fill, self._chunk[: self._fill]
        number = (self.position - rows) // self.chunk_len
        self._chunk, self._fill = None, 0
        self._in_flight.acquire()  # at most a few chunks between here and the disk
        try:
            encoded = self._encoders.submit(self._layout.encode, chunk)
        except BaseException:
            self._in_flight.release()
            raise
        self._jobs.submit(
            self._add_chunk, number, rows, chunk, encoded, cleanup=self._in_flight.release
        )

    # -- the jobs' side ------------------------------------------------------------

    def _add_chunk(self, number: int, rows: int, chunk: NDArray, encoded: Future[Any]) -> None:
        try:
            shard, local = divmod(number, self.shard_len // self.chunk_len)
            if shard != self._shard_no:
                self._close_shard()
                self._shard = self._open_shard(shard)
                self._shard_no = shard
            assert self._shard is not None
            self._shard.add(local, encoded.result())
        finally:
            self._in_flight.release()
        self._end = number * self.chunk_len + rows
        self.payload_bytes += chunk.nbytes
        if local == self.shard_len // self.chunk_len - 1:
            self._close_shard()

    def _open_shard(self, shard: int) -> ShardFile:
        return ShardFile(self.fs, self._shard_path(shard), self._layout)

    def _close_shard(self) -> None:
        if self._shard is None:
            return
        if self._end > self.array.shape[0]:  # zarr.json must cover what the shard holds
            self.array.resize((self._end, *self.sample))
        self._shard.close()
        self.files[self._shard.path] = self.fs.size(self._shard.path)
        if self._shard.digest is not None:
            self.checksums[self._shard.path] = self._shard.digest
        self.length = self._end
        self._shard = None

    def _shard_path(self, shard: int) -> str:
        zeros = (0,) * len(self.sample)
        return f"{self.path}/{self.array.metadata.encode_chunk_key((shard, *zeros))}"

    def abort(self) -> None:
        """Drop the open shard (on the jobs' side, after a failure)."""
        if self._shard is not None:
            self._shard.abort()
            self._shard = None

    def entry(self) -> ArrayEntry:
        """The committed extent (closed shards), as the rank manifest records it."""
        return ArrayEntry(
            key=self.key,
            write_id=self.write_id,
            rank=self.rank,
            path=self.path,
            dtype=self.schema.dtype,
            zarr_dtype=str(self.dtype.zarr),
            length=self.length,
            shape=[self.length, *self.sample],
            chunks=list(self.array.chunks),
            shards=list(self.array.shards or self.array.chunks),
            codecs=codecs_json(self.array),
            payload_bytes=self.payload_bytes,
            files=dict(self.files),
            checksums=dict(self.checksums),
        )
