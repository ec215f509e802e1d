"""Shards written by predstore's encoder read back through zarr itself, for every codec."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

from predstore.format.fs import LocalFileSystem
from predstore.format.shards import layout_of
from predstore.write import codecs


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _array(tmp_path: Path, dtype: str, sample: tuple[int, ...], codec: str):
    compressors = codecs.compressors(codec, None, np.dtype(dtype).itemsize)
    return zarr.create_array(
        zarr.storage.LocalStore(tmp_path / "a"),
        shape=(0, *sample),
        dtype=dtype,
        chunks=(4, *sample),
        shards=(16, *sample),
        compressors=compressors,
        fill_value=0,
        config={"write_empty_chunks": True},
    )


@pytest.mark.parametrize("codec", ["zstd", "blosc-lz4", "blosc-zstd", "gzip", "none"])
@pytest.mark.parametrize(
    ("dtype", "sample"), [("float32", (3, 5)), ("uint8", (7,)), ("uint16", ()), ("bool", (2,))]
)
def test_zarr_reads_what_predstore_writes(
    tmp_path: Path, pool, codec: str, dtype: str, sample: tuple[int, ...]
) -> None:
    array = _array(tmp_path, dtype, sample, codec)
    layout = layout_of(
        array.metadata.to_dict()["codecs"], dtype=np.dtype(dtype), shape=array.shape, shard_len=16
    )
    assert layout is not None
    rng = np.random.default_rng(0)
    data = (rng.random((37, *sample)) * 200).astype(dtype)  # two full shards and a partial one
    array.resize((37, *sample))
    fs = LocalFileSystem(tmp_path / "a")
    zeros = (0,) * len(sample)
    for shard, start in enumerate(range(0, 37, 16)):
        layout.write(
            fs, array.metadata.encode_chunk_key((shard, *zeros)), data[start : start + 16], pool
        )
    back = zarr.open_array(zarr.storage.LocalStore(tmp_path / "a"), mode="r")
    assert np.array_equal(back[:], data)
    assert np.array_equal(back[[3, 36, 17]], data[[3, 36, 17]])


def test_only_predstores_layout_is_recognized(tmp_path: Path) -> None:
    sharding = {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": [4],
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
            "index_location": "end",
        },
    }
    assert layout_of([sharding], dtype=np.dtype("f4"), shape=(0,), shard_len=16) is not None
    checked = {
        **sharding,
        "configuration": {
            **sharding["configuration"],
            "codecs": [
                {"name": "bytes"},
                {"name": "zstd", "configuration": {"level": 1}},
                {"name": "crc32c"},
            ],
        },
    }
    found = layout_of([checked], dtype=np.dtype("f4"), shape=(0,), shard_len=16)
    assert found is not None and found.checksum and found.codec is not None
    at_start = {
        **sharding,
        "configuration": {**sharding["configuration"], "index_location": "start"},
    }
    big = {
        **sharding,
        "configuration": {
            **sharding["configuration"],
            "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}],
        },
    }
    other = {
        **sharding,
        "configuration": {
            **sharding["configuration"],
            "codecs": [{"name": "bytes"}, {"name": "bz2"}],
        },
    }
    for codecs_ in (
        [at_start],
        [big],
        [other],
        [{"name": "bytes"}],
        [sharding, {"name": "crc32c"}],
    ):
        assert layout_of(codecs_, dtype=np.dtype("f4"), shape=(0,), shard_len=16) is None
