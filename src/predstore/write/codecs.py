"""Zarr compressors by name, and the automatic choice between them.

The default, ``"auto"``, judges each key by a sample of its first batch: it
tries zstd at level 1, and for multi-byte types also Blosc-zstd with byte
shuffling (which groups the exponent bytes of floats), and keeps the better
one if it shrinks the sample by at least a fifth: masks, label maps, class
probabilities and sparse outputs (2-1000x). Values that no codec shrinks
that much (float logits and embeddings, whose mantissas are noise: 5-10% at
best) are stored uncompressed, since compressing them would cost about a
millisecond of CPU per MB beside the predict loop for that little. Any codec
can be named instead, per store or per key.
"""

from __future__ import annotations

from typing import Any, Literal

import numcodecs
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

DEFAULT = "auto"
NAMES = ("auto", "zstd", "blosc-zstd", "blosc-lz4", "gzip", "none")
WORTH_COMPRESSING = 1.2
"""The compression ratio from which ``auto`` spends CPU on compressing."""


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
        return [ZstdCodec(level=1 if level is None else level)]
    if name == "blosc-zstd":
        return [BloscCodec(cname="zstd", clevel=1 if level is None else level, shuffle=shuffle)]
    if name == "blosc-lz4":
        return [BloscCodec(cname="lz4", clevel=5 if level is None else level, shuffle=shuffle)]
    if name == "gzip":
        return [GzipCodec(level=5 if level is None else level)]
    if name == "none":
        return []
    raise ValueError(f"unknown codec {name!r}; choose one of {', '.join(NAMES)}")


def choose(sample: bytes, itemsize: int) -> str:
    """What ``auto`` picks for data like ``sample``."""
    if not sample:
        return "none"
    ratios = {"zstd": len(sample) / len(numcodecs.Zstd(level=1).encode(sample))}
    if itemsize > 1:
        shuffled = numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE, typesize=itemsize)
        ratios["blosc-zstd"] = len(sample) / len(shuffled.encode(sample))
    best = max(ratios, key=ratios.__getitem__)
    return best if ratios[best] >= WORTH_COMPRESSING else "none"
