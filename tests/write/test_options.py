"""WriteOptions: one definition of the writers' options, checked when a writer is built."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import predstore
from predstore.lightning.prediction_writer import PredictionWriter
from predstore.write.options import NAMES


def test_every_option_is_an_argument_of_both_writers_with_the_same_default(tmp_path: Path) -> None:
    options = dataclasses.fields(predstore.WriteOptions)
    assert {"mode", "keys", "chunk_bytes", "part_bytes", "row_group_bytes", "shard_bytes"} <= set(
        NAMES
    )
    for name in NAMES:
        field = next(f for f in options if f.name == name)
        value = _another_value(name, field.default)
        writer = PredictionWriter(str(tmp_path / "p"), **{name: value})
        assert getattr(writer.options, name) == value, name
        with predstore.StoreWriter(tmp_path / name, **{name: value}) as store_writer:
            assert getattr(store_writer.options, name) == value, name
    assert PredictionWriter(str(tmp_path / "p")).options == predstore.WriteOptions()


def _another_value(name: str, default: Any) -> Any:
    if name == "mode":
        return "overwrite"
    if name == "keys":
        return {"x": "zarr"}
    if name == "codec":
        return "zstd"
    if name == "codec_level":
        return 3
    if (
        name == "storage_options"
    ):  # empty: a local store takes none (an object store's are tested on S3)
        return {}
    if isinstance(default, bool):
        return not default
    return default * 2


def test_an_options_object_is_taken_by_both_and_names_override_it(tmp_path: Path) -> None:
    options = predstore.WriteOptions(mode="overwrite", chunk_bytes=4096, codec="none")
    writer = PredictionWriter(str(tmp_path / "s"), options, chunk_bytes=8192)
    assert writer.options == dataclasses.replace(options, chunk_bytes=8192)
    assert options.chunk_bytes == 4096  # frozen: the caller's object is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.chunk_bytes = 1  # type: ignore[misc]
    with predstore.StoreWriter(tmp_path / "s", options) as store_writer:
        store_writer.write({"logits": np.ones((8, 1000), np.float32)}, indices=np.arange(8))
    (array,) = predstore.open(tmp_path / "s").manifest.arrays
    assert array.chunks == [1, 1000]  # 4096 bytes: one row of 4000


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"mode": "overwrites"},
            r"mode must be one of error, overwrite, append, resume, got 'overwrites'",
        ),
        ({"chunk_bytes": 0}, r"chunk_bytes must be a positive number of bytes .*got 0"),
        ({"part_bytes": "1MiB"}, r"part_bytes must be a positive number of bytes .*got '1MiB'"),
        ({"shard_bytes": True}, r"shard_bytes must be a positive"),
        (
            {"parquet_max_elements": 0},
            r"parquet_max_elements must be a positive number of elements .*got 0",
        ),
        ({"codec": "lzma"}, r"codec: unknown codec 'lzma'; choose one of auto, zstd"),
        ({"codec_level": "high"}, r"codec: the codec level must be an int or None"),
        ({"keys": {"logits": {"codec": "brotli"}}}, r"keys\['logits'\]: unknown codec 'brotli'"),
        ({"keys": {"logits": {"codek": "zstd"}}}, r"keys\['logits'\]: unknown field codek"),
        ({"keys": {"logits": "zar"}}, r"storage must be 'auto', 'parquet', 'zarr' or 'skip'"),
        ({"keys": "logits"}, r"keys must be a list of key names or a dict"),
        ({"commit_interval": -1}, r"commit_interval must be a number of seconds, 0 or more"),
        ({"retention": float("nan")}, r"retention must be a number of seconds"),
        ({"durable": "yes"}, r"durable must be True or False"),
        ({"chunk_byte": 1 << 20}, r"unknown write option chunk_byte; the options are mode, keys"),
    ],
)
def test_a_bad_option_fails_when_the_writer_is_built(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    for build in (
        lambda: predstore.WriteOptions(**arguments),
        lambda: PredictionWriter(str(tmp_path / "s"), **arguments),
        lambda: predstore.StoreWriter(tmp_path / "s", **arguments),
    ):
        if "chunk_byte" in arguments and build.__code__.co_names[-1] == "WriteOptions":
            continue  # a dataclass refuses unknown names with Python's own TypeError
        with pytest.raises(predstore.ConfigError, match=message) as raised:
            build()
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)
    assert not (tmp_path / "s").exists()  # nothing was written


def test_prediction_writer_arguments_of_its_own_are_checked_too(tmp_path: Path) -> None:
    for arguments, message in [
        ({"max_pending_bytes": 0}, "max_pending_bytes must be a positive int"),
        ({"name_key": 3}, "name_key must be the name of an output"),
        ({"strict": "no"}, "strict must be True or False"),
        ({"options": {"mode": "overwrite"}}, "options must be a predstore.WriteOptions"),
    ]:
        with pytest.raises(predstore.ConfigError, match=message):
            PredictionWriter(str(tmp_path / "s"), **arguments)


def test_the_writers_signatures_share_the_options_object() -> None:
    for writer in (predstore.StoreWriter, PredictionWriter):
        parameters = inspect.signature(writer).parameters
        assert parameters["options"].annotation in ("WriteOptions | None",)
        assert parameters["option_values"].kind is inspect.Parameter.VAR_KEYWORD


def test_a_keys_rule_that_matches_no_output_warns_once(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with predstore.StoreWriter(
            tmp_path / "s", keys={"logit": "zarr", "debug.*": "skip", "prob": "parquet"}
        ) as writer:
            for start in (0, 4):
                indices = np.arange(start, start + 4)
                writer.write({"logits": np.ones((4, 10)), "prob": np.ones(4)}, indices=indices)
    messages = [str(w.message) for w in caught if "match no key" in str(w.message)]
    assert len(messages) == 1
    assert "['logit', 'debug.*']" in messages[0] and "['logits', 'prob']" in messages[0]


def test_codecs_apply_to_parquet_keys(tmp_path: Path) -> None:
    keys = {"prob": {"codec": "gzip", "level": 9}, "pred": "parquet", "note": {"codec": "none"}}
    with predstore.StoreWriter(tmp_path / "s", keys=keys, codec="blosc-lz4") as writer:
        writer.write(
            {
                "prob": np.random.default_rng(0).random(50),
                "pred": np.arange(50),
                "note": ["a"] * 50,
            },
            indices=np.arange(50),
        )
    store = predstore.open(tmp_path / "s")
    (part,) = store.manifest.parts
    meta = pq.ParquetFile(tmp_path / "s" / part.path).metadata.row_group(0)
    compression = {
        meta.column(i).path_in_schema: meta.column(i).compression for i in range(meta.num_columns)
    }
    assert compression == {
        "index": "ZSTD",
        "dataloader_idx": "ZSTD",
        "name": "ZSTD",
        "prob": "GZIP",
        "pred": "LZ4",
        "note": "UNCOMPRESSED",
    }
    assert store.read("prob").shape == (50,)


def test_rows_of_64_kib_or_more_get_an_inner_chunk_each() -> None:
    options = predstore.WriteOptions()  # chunk_bytes: 1 MiB
    assert options.chunk_rows(4000) == 256  # a power of two of rows filling about 1 MiB
    assert options.chunk_rows((64 << 10) - 1) == 16
    assert options.chunk_rows(64 << 10) == 1
    assert options.chunk_rows(256 << 10) == 1  # not four, as 1 MiB would hold
    assert options.chunk_rows(8 << 20) == 1
    assert predstore.WriteOptions(chunk_bytes=16 << 20).chunk_rows(256 << 10) == 1
    assert predstore.WriteOptions(chunk_bytes=4096).chunk_rows(4000) == 1


def test_a_store_of_volumes_holds_one_per_inner_chunk_and_reads_them_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    masks = (rng.random((6, 64, 64, 64)) > 0.9).astype(np.uint8)  # 256 KiB a row
    with predstore.StoreWriter(tmp_path / "s", shard_bytes=4 << 20) as writer:
        writer.write({"mask": masks[:5]}, indices=np.arange(5))
        writer.write({"mask": masks[5:]}, indices=np.arange(5, 6))
    store = predstore.open(tmp_path / "s")
    (entry,) = store.manifest.arrays
    assert entry.chunks[0] == 1 and entry.shards[0] == 16
    assert np.array_equal(store.read("mask", [5, 0, 3]), masks[[5, 0, 3]])
    dataset = predstore.PredictionDataset(tmp_path / "s", "mask", as_torch=False)
    assert np.array_equal(np.stack([dataset[i]["mask"] for i in (4, 1)]), masks[[4, 1]])
