"""ArrayReader: rows of uncompressed chunks gathered straight from the mapped shard files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import predstore
from predstore.read.arrays import ArrayReader


def _one_shard(path: Path, values: np.ndarray) -> ArrayReader:
    with predstore.StoreWriter(
        path, keys={"x": predstore.KeySpec(storage="zarr", codec="none")}
    ) as writer:
        writer.write({"x": values}, np.arange(len(values)))
    store = predstore.open(path)
    [entry] = [a for a in store.manifest.arrays if a.key == "x"]
    reader = ArrayReader(store.fs, entry)
    assert reader.reads_in_place and len(entry.files) == 1
    return reader


def test_random_rows_of_one_shard_file_are_gathered_without_copying_the_file(
    tmp_path: Path,
) -> None:
    # Rows of 16 KiB in one 10 MB shard: a gather that first made the file's window (every
    # byte offset a row) contiguous, as np.take does, would need 160 GB.
    values = np.random.default_rng(0).standard_normal((600, 4096)).astype(np.float32)
    reader = _one_shard(tmp_path / "s", values)
    rng = np.random.default_rng(1)
    for rows in [rng.permutation(600)[:40], rng.permutation(600)[:40], np.arange(100, 0, -7)]:
        assert np.array_equal(reader.rows(rows), values[rows])
