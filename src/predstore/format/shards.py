"""Zarr v3 shards of the layout predstore writes, encoded and decoded directly.

A shard of the ``sharding_indexed`` codec is its inner chunks, each encoded
by the inner codecs (``bytes``, then at most one compressor), one after the
other, followed by the index: per inner chunk its byte offset and length as
little-endian uint64 (``2**64 - 1`` twice for a chunk that is absent), and
the index's crc32c. :func:`layout_of` recognizes arrays whose ``zarr.json``
declares exactly that (every array predstore creates, on a little-endian
machine) and returns ``None`` for any other, which is then read and written
through zarr.

Why not always through zarr: zarr-python assembles each shard in memory
through its asyncio codec pipeline, which costs about as much CPU as the
compression itself, allocates a fresh shard-sized buffer every time and
decodes one chunk at a time. Here inner chunks are encoded and decoded on a
small thread pool (the codecs release the GIL), streamed to and from the
file, and zarr reads every file written here (the tests check it).
"""

from __future__ import annotations

import contextlib
import sys
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numcodecs
import numpy as np

from predstore.errors import CorruptStoreError
from predstore.format.fs import FileSystem

NDArray = np.ndarray[Any, Any]
ABSENT = np.iinfo(np.uint64).max
Codec = Any  # a numcodecs codec


@dataclass(frozen=True)
class ShardLayout:
    """Chunks of ``chunk_len`` rows of ``sample`` shape, ``chunks_per_shard`` of them a shard."""

    chunk_len: int
    chunks_per_shard: int
    sample: tuple[int, ...]
    dtype: np.dtype[Any]
    codec: Codec | None

    @property
    def index_bytes(self) -> int:
        return self.chunks_per_shard * 16 + 4

    # -- writing ---------------------------------------------------------------

    def encode(self, rows: NDArray) -> Any:
        """One inner chunk, encoded: ``rows`` (at most ``chunk_len``) padded with zeros to full size."""
        codec = self.codec
        if len(rows) < self.chunk_len:  # an edge chunk is stored at full size, filled with zeros
            padded = np.zeros((self.chunk_len, *rows.shape[1:]), rows.dtype)
            padded[: len(rows)] = rows
            rows, codec = padded, _padding_codec(codec)
        raw = np.ascontiguousarray(rows)
        return raw.reshape(-1).view(np.uint8) if codec is None else codec.encode(raw)

    def write(self, fs: FileSystem, path: str, data: NDArray, pool: Executor) -> None:
        """Write ``data`` (at most one shard of rows, from the shard's start) as the shard file ``path``."""
        pieces = [data[i : i + self.chunk_len] for i in range(0, len(data), self.chunk_len)]
        shard = ShardFile(fs, path, self)
        try:
            for i, encoded in enumerate(pool.map(self.encode, pieces)):
                shard.add(i, encoded)
        except BaseException:
            shard.abort()
            raise
        shard.close()

    # -- reading ---------------------------------------------------------------

    def read_index(self, fs: FileSystem, path: str, size: int) -> NDArray:
        """The ``(chunks_per_shard, 2)`` offsets and lengths of the shard file ``path`` of ``size`` bytes."""
        tail = fs.read_range(path, size - self.index_bytes, self.index_bytes)
        table, crc = tail[:-4], tail[-4:]
        if len(tail) != self.index_bytes or np.frombuffer(crc, "<u4")[0] != google_crc32c.value(
            table
        ):
            raise CorruptStoreError(f"shard {path}: its index is damaged (checksum mismatch)")
        return np.frombuffer(table, "<u8").reshape(self.chunks_per_shard, 2)

    def decode(self, raw: bytes | memoryview) -> NDArray:
        """One inner chunk's rows from its encoded bytes."""
        data = raw if self.codec is None else self.codec.decode(raw)
        return np.frombuffer(data, self.dtype).reshape(self.chunk_len, *self.sample)


class ShardFile:
    """A shard file being written: encoded chunks appended as they come, the index on close.

    Nothing is visible at ``path`` before :meth:`close` (the file is written
    under a temporary name); chunks never added are absent from the index,
    which readers (and zarr) take as chunks of zeros.
    """

    def __init__(self, fs: FileSystem, path: str, layout: ShardLayout) -> None:
        self.path = path
        self._stack = contextlib.ExitStack()
        self._sink = self._stack.enter_context(fs.open_atomic(path))
        self._index = np.full((layout.chunks_per_shard, 2), ABSENT, dtype="<u8")
        self._offset = 0

    def add(self, local: int, encoded: Any) -> None:
        """Append the encoded inner chunk number ``local`` of this shard."""
        self._sink.write(encoded)
        size = memoryview(encoded).nbytes
        self._index[local] = (self._offset, size)
        self._offset += size

    def close(self) -> None:
        table = self._index.tobytes()
        self._sink.write(table)
        self._sink.write(np.array([google_crc32c.value(table)], dtype="<u4").tobytes())
        self._stack.close()  # renames the file into place

    def abort(self) -> None:
        """Drop the shard: its temporary file is removed."""
        with contextlib.suppress(Exception):
            self._stack.__exit__(RuntimeError, RuntimeError("shard discarded"), None)


def layout_of(
    codecs: list[Any], *, dtype: np.dtype[Any], shape: tuple[int, ...], shard_len: int
) -> ShardLayout | None:
    """The layout of an array whose ``zarr.json`` codecs are ``codecs``, if it is the one above."""
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    config = codecs[0]["configuration"]
    index = config["index_codecs"]
    if (
        config.get("index_location", "end") != "end"
        or [c.get("name") for c in index] != ["bytes", "crc32c"]
        or index[0].get("configuration", {}).get("endian", "little") != "little"
    ):
        return None
    inner = list(config["codecs"])
    if not inner or inner[0].get("name") != "bytes" or len(inner) > 2:
        return None
    endian = inner[0].get("configuration", {}).get("endian", "little")
    if dtype.itemsize > 1 and (endian != "little" or sys.byteorder != "little"):
        return None
    chunk = [int(n) for n in config["chunk_shape"]]
    if chunk[1:] != list(shape[1:]) or shard_len % chunk[0]:
        return None  # predstore chunks only along the first axis
    codec = _codec(inner[1]) if len(inner) == 2 else None
    if len(inner) == 2 and codec is None:
        return None
    return ShardLayout(chunk[0], shard_len // chunk[0], tuple(shape[1:]), dtype, codec)


def _padding_codec(codec: Codec | None) -> Codec | None:
    """The codec of a zero-padded edge chunk: Blosc at level 0 (stored) becomes level 5.

    A Blosc frame says how it was written, so any Blosc decoder reads frames
    of every level: the padding of a small write then costs a few hundred
    bytes instead of a whole chunk, and full chunks still cost no CPU.
    """
    if isinstance(codec, numcodecs.Blosc) and codec.clevel == 0:
        return numcodecs.Blosc(
            cname=codec.cname, clevel=5, shuffle=codec.shuffle, blocksize=codec.blocksize
        )
    return codec


def _codec(spec: dict[str, Any]) -> Codec | None:
    """The numcodecs codec equal to a Zarr v3 compressor, for the ones predstore configures."""
    name, config = spec.get("name"), spec.get("configuration", {})
    if name == "zstd":
        return numcodecs.Zstd(level=config["level"], checksum=config.get("checksum", False))
    if name == "blosc":
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[config["shuffle"]]
        return numcodecs.Blosc.from_config(
            {
                "cname": config["cname"],
                "clevel": config["clevel"],
                "shuffle": shuffle,
                "blocksize": config.get("blocksize", 0),
                "typesize": config.get("typesize"),
            }
        )
    if name == "gzip":
        return numcodecs.GZip(level=config["level"])
    return None


def codecs_json(array: Any) -> list[Any]:
    """A zarr array's codec pipeline as its ``zarr.json`` holds it (lists, not tuples)."""
    return _json(array.metadata.to_dict()["codecs"])


def layout_of_array(array: Any, shard_len: int) -> ShardLayout | None:
    """:func:`layout_of` for an open zarr array."""
    return layout_of(
        codecs_json(array),
        dtype=np.dtype(array.dtype),
        shape=tuple(array.shape),
        shard_len=shard_len,
    )


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value
