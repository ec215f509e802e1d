"""Zarr v3 shards of the layout predstore writes, encoded and decoded directly.

A shard of the ``sharding_indexed`` codec is its inner chunks, each encoded
by the inner codecs (``bytes``, then at most one compressor, then the
chunk's crc32c), one after the other, followed by the index: per inner
chunk its byte offset and length as little-endian uint64 (``2**64 - 1``
twice for a chunk that is absent), and the index's crc32c. :func:`layout_of`
recognizes arrays whose ``zarr.json`` declares exactly that (every array
predstore creates, on a little-endian machine; stores written before
checksums lack the chunks' crc32c) and returns ``None`` for any other.
Readers take nothing else: :func:`read_layout` refuses an array whose
metadata is not this layout, so every byte read goes through the
:class:`~predstore.format.fs.FileSystem`, at offsets that this module
computes and checks.

Why not always through zarr: zarr-python assembles each shard in memory
through its asyncio codec pipeline, which costs about as much CPU as the
compression itself, allocates a fresh shard-sized buffer every time and
decodes one chunk at a time. Here inner chunks are encoded and decoded on a
small thread pool (the codecs release the GIL), streamed to and from the
file, and zarr reads every file written here (the tests check it).
"""

from __future__ import annotations

import contextlib
import json
import sys
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numcodecs
import numpy as np

from predstore.errors import CorruptStoreError
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem, crc32c
from predstore.format.manifest import ArrayEntry

ABSENT = np.iinfo(np.uint64).max
Codec = Any  # a numcodecs codec
MAX_ZARR_JSON_BYTES = 1 << 20
"""An array's ``zarr.json`` larger than this is refused unread."""


@dataclass(frozen=True)
class ShardLayout:
    """Chunks of ``chunk_len`` rows of ``sample`` shape, ``chunks_per_shard`` of them a shard."""

    chunk_len: int
    chunks_per_shard: int
    sample: tuple[int, ...]
    dtype: np.dtype[Any]
    codec: Codec | None
    checksum: bool = False
    """Whether each inner chunk ends with its crc32c (Zarr's ``crc32c`` codec)."""

    @property
    def index_bytes(self) -> int:
        return self.chunks_per_shard * 16 + 4

    @property
    def stores_raw(self) -> bool:
        """Whether full chunks hold their values as they are (no codec, or Blosc at level 0):
        :meth:`decode` then returns a view of the bytes it is given, without copying."""
        return self.codec is None or _stores_raw(self.codec)

    @property
    def chunk_bytes(self) -> int:
        """Bytes of one decoded inner chunk."""
        return self.chunk_len * int(np.prod(self.sample)) * self.dtype.itemsize

    # -- writing ---------------------------------------------------------------

    def encode(self, rows: NDArray) -> tuple[Any, ...]:
        """One inner chunk, encoded: ``rows`` (at most ``chunk_len``) padded with zeros to full size.

        The chunk's bytes are the pieces returned, in order: the encoded values, then their
        crc32c (when the layout has one), kept apart so that a chunk is never copied only to
        add a few bytes to it. A stored chunk's values are a view of ``rows``: they must
        not change until the pieces are written.
        """
        codec = self.codec
        if len(rows) < self.chunk_len:  # an edge chunk is stored at full size, filled with zeros
            padded = np.zeros((self.chunk_len, *rows.shape[1:]), rows.dtype)
            padded[: len(rows)] = rows
            rows, codec = padded, _padding_codec(codec)
        raw = np.ascontiguousarray(rows)
        values = raw.reshape(-1).view(np.uint8)
        if codec is None:
            pieces: tuple[Any, ...] = (values,)
        elif _stores_raw(codec):  # Blosc's frame is a header and the values: not copied here
            pieces = (_stored_header(codec, raw), values)
        else:
            pieces = (codec.encode(raw),)
        if not self.checksum:
            return pieces
        crc = 0
        for piece in pieces:
            crc = crc32c(piece, crc)
        return (*pieces, crc.to_bytes(4, "little"))

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
        if size < self.index_bytes:
            raise _damaged(f"shard {path}", f"it has {size} bytes, too few to hold its index")
        tail = fs.read_range(path, size - self.index_bytes, self.index_bytes)
        table, crc = tail[:-4], tail[-4:]
        if len(tail) != self.index_bytes or int(np.frombuffer(crc, "<u4")[0]) != crc32c(table):
            raise CorruptStoreError(f"shard {path}: its index is damaged (checksum mismatch)")
        return np.frombuffer(table, "<u8").reshape(self.chunks_per_shard, 2)

    def decode(self, raw: bytes | memoryview, where: str) -> NDArray:
        """One inner chunk's rows from its encoded bytes; ``where`` names it in errors."""
        payload = self.payload(raw, where)
        try:
            data = _stored(self.codec, payload)
            if data is None:  # a codec that compressed the chunk
                data = self.codec.decode(payload)  # type: ignore[union-attr]
        except Exception as e:  # each codec raises its own types for damaged input
            raise _damaged(where, f"it cannot be decoded: {e}") from None
        if memoryview(data).nbytes != self.chunk_bytes:
            raise _damaged(
                where, f"it decodes to {memoryview(data).nbytes} bytes, not {self.chunk_bytes}"
            )
        rows = np.frombuffer(data, self.dtype).reshape(self.chunk_len, *self.sample)
        return rows if rows.flags.aligned else rows.copy()

    def decode_into(self, raw: bytes | memoryview, out: NDArray, where: str) -> None:
        """Decode one whole inner chunk straight into ``out`` (C-contiguous, its shape and dtype)."""
        if self.codec is None:
            out[...] = self.decode(raw, where)
            return
        payload = self.payload(raw, where)
        size = _decoded_size(self.codec, payload)
        if size is None:  # the codec does not say: decode aside, checking the size
            out[...] = self.decode(raw, where)
            return
        if size != self.chunk_bytes:
            raise _damaged(where, f"it decodes to {size} bytes, not {self.chunk_bytes}")
        try:
            self.codec.decode(payload, out=out)
        except Exception as e:  # each codec raises its own types for damaged input
            raise _damaged(where, f"it cannot be decoded: {e}") from None

    def digest(self, index: NDArray, chunk_crcs: list[bytes | None]) -> int:
        """What the manifest records of a shard: the CRC-32C of its index table followed by
        each present chunk's own crc32c, in chunk order.

        With the chunks' and the index's own checksums, this covers every byte
        of the shard and the order of its chunks: a CRC over the whole file
        could not see two chunks swapped, since each chunk that ends with its
        own CRC-32C leaves a CRC-32C in the same state whatever its content.
        """
        crc = crc32c(np.ascontiguousarray(index, "<u8"))
        return crc32c(b"".join(c for c in chunk_crcs if c is not None), crc)

    def payload(self, raw: bytes | memoryview, where: str) -> memoryview:
        """The chunk's encoded bytes, its crc32c checked (when the layout has one) and removed."""
        view = memoryview(raw).cast("B")
        if not self.checksum:
            return view
        if len(view) < 4 or crc32c(view[:-4]) != int.from_bytes(view[-4:], "little"):
            raise _damaged(where, "its checksum does not match its bytes")
        return view[:-4]


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
        self._layout = layout
        self._index = np.full((layout.chunks_per_shard, 2), ABSENT, dtype="<u8")
        self._chunk_crcs: dict[int, bytes] = {}
        self._offset = 0
        self.digest: int | None = None
        """:meth:`ShardLayout.digest` of the file, once closed (layouts with chunk checksums)."""

    def add(self, local: int, pieces: tuple[Any, ...]) -> None:
        """Append the inner chunk number ``local`` of this shard, as :meth:`ShardLayout.encode`
        gave it (its pieces, written one after the other)."""
        size = 0
        for piece in pieces:
            self._sink.write(piece)
            size += memoryview(piece).nbytes
        self._index[local] = (self._offset, size)
        self._offset += size
        if self._layout.checksum:
            self._chunk_crcs[local] = bytes(memoryview(pieces[-1]).cast("B")[-4:])

    def close(self) -> None:
        table = self._index.tobytes()
        self._sink.write(table)
        self._sink.write(np.array([crc32c(table)], dtype="<u4").tobytes())
        self._stack.close()  # renames the file into place
        if self._layout.checksum:
            self.digest = self._layout.digest(
                self._index, [self._chunk_crcs.get(i) for i in range(len(self._index))]
            )

    def abort(self) -> None:
        """Drop the shard: its temporary file is removed."""
        with contextlib.suppress(Exception):
            self._stack.__exit__(RuntimeError, RuntimeError("shard discarded"), None)


def _stored(codec: Codec | None, frame: memoryview) -> memoryview | None:
    """The values of a frame that holds them as they are (no codec, or a Blosc frame whose
    data was copied in uncompressed), as a view of ``frame``; ``None`` for any other frame."""
    if codec is None:
        return frame
    if not isinstance(codec, numcodecs.Blosc) or len(frame) < _BLOSC_HEADER:
        return None
    flags, size = frame[2], int.from_bytes(frame[4:8], "little")
    if flags & _BLOSC_MEMCPYED and size + _BLOSC_HEADER == len(frame):
        return frame[_BLOSC_HEADER:]
    return None


_BLOSC_HEADER = 16
_BLOSC_MEMCPYED = 0x02
"""Blosc's flag for a frame whose data follows the header uncompressed."""


def _decoded_size(codec: Codec, frame: memoryview) -> int | None:
    """The decoded size a zstd or Blosc frame declares in its header (``None``: not known).

    Decoding into a buffer of the expected size would silently leave the
    rest of it untouched for a frame that decodes to less.
    """
    if isinstance(codec, numcodecs.Blosc):
        return int.from_bytes(frame[4:8], "little") if len(frame) >= 16 else -1
    if not isinstance(codec, numcodecs.Zstd):
        return None
    if len(frame) < 6 or bytes(frame[:4]) != b"\x28\xb5\x2f\xfd":
        return -1
    descriptor = frame[4]
    single_segment = (descriptor >> 5) & 1
    at = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    width = (single_segment, 2, 4, 8)[descriptor >> 6]
    if not width:
        return None
    return int.from_bytes(frame[at : at + width], "little") + (256 if width == 2 else 0)


def _damaged(where: str, why: str) -> CorruptStoreError:
    return CorruptStoreError(
        f"{where}: {why}; the file is damaged (predstore verify --deep lists every damaged file)"
    )


def read_layout(fs: FileSystem, entry: ArrayEntry) -> ShardLayout:
    """The layout of the array ``entry`` from its ``zarr.json``, which must match the manifest.

    Anything else (another Zarr layout, other chunks, another dtype) is
    refused: predstore reads only what it computes the offsets of itself.
    """
    source = f"{entry.path}/zarr.json"
    try:
        meta = json.loads(fs.read_metadata(source, MAX_ZARR_JSON_BYTES))
    except FileNotFoundError:
        raise CorruptStoreError(
            f"array {entry.path} (key {entry.key!r}) is missing its {source}"
        ) from None
    except (ValueError, RecursionError) as e:
        raise CorruptStoreError(
            f"{source} is not readable JSON ({e}); the file is damaged"
        ) from None
    why = _mismatch(meta, entry)
    if why:
        raise CorruptStoreError(
            f"{source} is not predstore's array layout ({why}); predstore reads only the "
            "layout it writes: the file is damaged or was replaced"
        )
    layout = layout_of(
        meta["codecs"],
        dtype=np.dtype(entry.zarr_dtype),
        shape=tuple(meta["shape"]),
        shard_len=entry.shards[0],
    )
    assert layout is not None  # _mismatch checked it
    return layout


def _mismatch(meta: Any, entry: ArrayEntry) -> str | None:
    """Why ``meta`` (a ``zarr.json``) is not the array ``entry`` in predstore's layout, if it is not."""
    try:
        if meta["zarr_format"] != 3 or meta["node_type"] != "array":
            return "not a Zarr v3 array"
        shape = [int(n) for n in meta["shape"]]
        if shape[0] < entry.length or shape[1:] != entry.shape[1:]:
            return f"shape {shape}, the manifest says {entry.length} x {entry.shape[1:]}"
        if meta["data_type"] != entry.zarr_dtype:
            return f"data type {meta['data_type']!r}, the manifest says {entry.zarr_dtype!r}"
        grid, encoding = meta["chunk_grid"], meta["chunk_key_encoding"]
        if grid["name"] != "regular" or grid["configuration"]["chunk_shape"] != entry.shards:
            return f"chunk grid {grid!r}, the manifest says shards of {entry.shards}"
        if (
            encoding["name"] != "default"
            or encoding.get("configuration", {}).get("separator", "/") != "/"
        ):
            return f"chunk key encoding {encoding!r}"
        fill = meta["fill_value"]
        if not isinstance(fill, int | float) or fill != 0 or meta.get("storage_transformers"):
            return f"fill value {fill!r} or storage transformers"
        codecs = meta["codecs"]
        inner = codecs[0]["configuration"]["chunk_shape"] if len(codecs) == 1 else None
        if inner != entry.chunks:
            return f"inner chunks {inner!r}, the manifest says {entry.chunks}"
        layout = layout_of(
            codecs, dtype=np.dtype(entry.zarr_dtype), shape=tuple(shape), shard_len=entry.shards[0]
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        return f"a field is missing or malformed: {e!r}"
    return None if layout is not None else f"codecs {codecs!r}"


def shard_key(shard: int, ndim: int) -> str:
    """The file of shard number ``shard`` in an array of ``ndim`` dimensions, from the array's directory."""
    return "c/" + "/".join([str(shard), *["0"] * (ndim - 1)])


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
    checksum = bool(inner) and inner[-1] == {"name": "crc32c"}
    if checksum:
        inner = inner[:-1]
    if not inner or inner[0].get("name") != "bytes" or len(inner) > 2:
        return None
    endian = inner[0].get("configuration", {}).get("endian", "little")
    if dtype.itemsize > 1 and (endian != "little" or sys.byteorder != "little"):
        return None
    chunk = [int(n) for n in config["chunk_shape"]]
    if chunk[0] < 1 or chunk[1:] != list(shape[1:]) or shard_len % chunk[0]:
        return None  # predstore chunks only along the first axis
    codec = _codec(inner[1]) if len(inner) == 2 else None
    if len(inner) == 2 and codec is None:
        return None
    return ShardLayout(chunk[0], shard_len // chunk[0], tuple(shape[1:]), dtype, codec, checksum)


def _stores_raw(codec: Codec) -> bool:
    return isinstance(codec, numcodecs.Blosc) and codec.clevel == 0


_STORED_HEADERS: dict[tuple[str, tuple[int, ...], str], bytes] = {}


def _stored_header(codec: Codec, raw: NDArray) -> bytes:
    """The header of the frame Blosc at level 0 makes of ``raw``: what precedes its values.

    It depends on the sizes and the codec's settings only (the values are copied
    as they are), so it is taken once from a frame of zeros of the same shape and
    checked to be such a frame; the values are then written after it, uncopied.
    """
    key = (json.dumps(codec.get_config(), sort_keys=True), raw.shape, raw.dtype.str)
    header = _STORED_HEADERS.get(key)
    if header is None:
        frame = memoryview(codec.encode(np.zeros_like(raw))).cast("B")
        if _stored(codec, frame) is None:
            raise AssertionError(f"Blosc at level 0 compressed a chunk ({codec!r})")
        header = _STORED_HEADERS[key] = bytes(frame[:_BLOSC_HEADER])
    return header


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
    try:
        return _known_codec(name, config)
    except (KeyError, TypeError, ValueError):  # a damaged configuration
        return None


def _known_codec(name: Any, config: dict[str, Any]) -> Codec | None:
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
