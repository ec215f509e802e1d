"""Zarr compressors by name, and the automatic choice between them.

The default, ``"auto"``, judges each key by its first batch: where zstd at
level 1 shrinks a sample of it by at least a fifth (masks, label maps,
sparse or quantized outputs, which shrink 100-1000x), the key is compressed
with zstd; otherwise (float logits, embeddings, probabilities, whose
mantissas are noise and gain 5-15% at best) it gets Blosc LZ4 with byte
shuffling, which takes most of that gain at several GB/s instead of ~1 GB/s
per core. Any codec can be named instead, per store or per key.
"""

from __future__ import annotations

from typing import Any, Literal

import numcodecs
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

DEFAULT = "auto"
NAMES = ("auto", "zstd", "blosc-lz4", "blosc-zstd", "gzip", "none")
WORTH_ZSTD = 1.2
"""The compression ratio from which "auto" spends zstd's CPU time."""


def compressors(
    name: str | None, level: int | None, itemsize: int, *, sample: bytes = b""
) -> list[Any]:
    """The Zarr v3 compressor list for codec ``name`` on elements of ``itemsize`` bytes.

    ``sample`` is data of the key that ``"auto"`` judges.
    """
    name = name or DEFAULT
    if name == "auto":
        name = "zstd" if ratio(sample) >= WORTH_ZSTD else "blosc-lz4"
    shuffle: Literal["shuffle", "bitshuffle"] = "bitshuffle" if itemsize == 1 else "shuffle"
    if name == "zstd":
        return [ZstdCodec(level=1 if level is None else level)]
    if name == "blosc-lz4":
        return [BloscCodec(cname="lz4", clevel=5 if level is None else level, shuffle=shuffle)]
    if name == "blosc-zstd":
        return [BloscCodec(cname="zstd", clevel=1 if level is None else level, shuffle=shuffle)]
    if name == "gzip":
        return [GzipCodec(level=5 if level is None else level)]
    if name == "none":
        return []
    raise ValueError(f"unknown codec {name!r}; choose one of {', '.join(NAMES)}")


def ratio(sample: bytes) -> float:
    """How much zstd at level 1 shrinks ``sample`` (1.0 for an empty sample)."""
    if not sample:
        return 1.0
    return len(sample) / len(numcodecs.Zstd(level=1).encode(sample))
