"""Zarr compressors by name, and the automatic choice between them.

The default, ``"auto"``, judges each key by a sample of its first batch,
compressed with Blosc-LZ4 over shuffled bytes (which line up the exponent
bytes of floats; bits for one-byte types) and with zstd at level 1:

- if neither shrinks the sample by a fifth (float logits and embeddings,
  whose mantissas are noise: 0-10%), the key is stored uncompressed, since
  compressing would cost CPU beside the predict loop for nothing; only the
  zero padding of a part's last, partial chunk is compressed (Blosc at
  level 0 in ``zarr.json``, so that small writes do not pay for padding);
- if zstd shrinks it at least 1.5x more than LZ4 (masks, label maps, sparse
  outputs: 10-2000x), zstd, whose ratio is then worth its ~0.5 GB/s;
- otherwise (class probabilities, smooth outputs: 2-3x) Blosc-LZ4, which
  compresses at over 1 GB/s and decodes at about 3 GB/s per core.

Any codec can be named instead, per store or per key. zstd frames carry
zstd's own content checksum, verified whenever they are decoded; every
inner chunk also ends with its crc32c whatever its codec (see
:mod:`predstore.format.shards`).
"""

from __future__ import annotations

from typing import Any, Literal

import numcodecs
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

from predstore.errors import ConfigError

DEFAULT = "auto"
NAMES = ("auto", "zstd", "blosc-zstd", "blosc-lz4", "gzip", "none")
WORTH_COMPRESSING = 1.2
"""The compression ratio from which ``auto`` spends CPU on compressing."""
WORTH_ZSTD = 1.5
"""How much better than LZ4's zstd's ratio must be for ``auto`` to pay its speed."""


def compressors(
    name: str | None, level: int | None, itemsize: int, *, sample: bytes = b""
) -> list[Any]:
    """The Zarr v3 compressor list for codec ``name`` on elements of ``itemsize`` bytes.

    ``sample`` is data of the key that ``"auto"`` judges.
    """
    name = name or DEFAULT
    if name == "auto":
        name = choose(sample, itemsize)
    shuffle: Literal["shuffle", "bitshuffle"] = "bitshuffle" if itemsize == 1 else "shuffle"
    if name == "zstd":
        return [ZstdCodec(level=1 if level is None else level, checksum=True)]
    if name == "blosc-zstd":
        return [BloscCodec(cname="zstd", clevel=1 if level is None else level, shuffle=shuffle)]
    if name == "blosc-lz4":
        return [BloscCodec(cname="lz4", clevel=5 if level is None else level, shuffle=shuffle)]
    if name == "gzip":
        return [GzipCodec(level=5 if level is None else level)]
    if name == "none":
        return []
    if name == "stored":
        # Blosc at level 0 keeps each chunk's bytes as they are (a 16-byte header
        # added), yet lets a zero-padded edge chunk be compressed: see ShardLayout.encode.
        return [BloscCodec(cname="zstd", clevel=0, shuffle="noshuffle", typesize=itemsize)]
    raise ConfigError(f"unknown codec {name!r}; choose one of {', '.join(NAMES)}")


_PARQUET = {
    "auto": "zstd",
    "zstd": "zstd",
    "blosc-zstd": "zstd",
    "blosc-lz4": "lz4",
    "gzip": "gzip",
}
_PARQUET_LEVEL = {"zstd": 1, "gzip": 5}


def parquet(name: str | None, level: int | None) -> tuple[str, int | None]:
    """The Parquet column compression closest to codec ``name`` at ``level``.

    Parquet has no Blosc: ``blosc-zstd`` is zstd, ``blosc-lz4`` is LZ4 (which
    takes no level); ``auto`` is zstd at level 1, which every Parquet reader
    decodes fast.
    """
    name = name or DEFAULT
    if name == "none":
        return ("none", None)
    if name not in _PARQUET:
        raise ConfigError(f"unknown codec {name!r}; choose one of {', '.join(NAMES)}")
    parquet_name = _PARQUET[name]
    if parquet_name == "lz4" or name == "auto":
        return (parquet_name, _PARQUET_LEVEL.get(parquet_name))
    return (parquet_name, _PARQUET_LEVEL[parquet_name] if level is None else level)


def choose(sample: bytes, itemsize: int) -> str:
    """What ``auto`` picks for data like ``sample``."""
    if not sample:
        return "none"
    shuffle = numcodecs.Blosc.BITSHUFFLE if itemsize == 1 else numcodecs.Blosc.SHUFFLE
    lz4 = _ratio(numcodecs.Blosc("lz4", 5, shuffle, typesize=itemsize), sample)
    zstd = _ratio(numcodecs.Zstd(level=1), sample)
    if max(lz4, zstd) < WORTH_COMPRESSING:
        return "stored"
    return "zstd" if zstd >= WORTH_ZSTD * lz4 else "blosc-lz4"


def _ratio(codec: Any, sample: bytes) -> float:
    return len(sample) / len(codec.encode(sample))
