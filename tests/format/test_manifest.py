from __future__ import annotations

import json
from pathlib import Path

import pytest

from predstore.errors import CorruptStoreError, FormatVersionError
from predstore.format.manifest import RankManifest, StoreManifest, decode, encode
from support import write_ranks


@pytest.fixture
def manifest_bytes(tmp_path: Path) -> bytes:
    write_ranks(tmp_path / "s", [list(range(40))])
    return (tmp_path / "s" / "manifest.json").read_bytes()


def test_encode_decode_round_trip(manifest_bytes: bytes) -> None:
    manifest = decode(manifest_bytes, StoreManifest, source="m")
    assert decode(encode(manifest), StoreManifest, source="m") == manifest
    assert manifest.rows == 40


def test_truncated_manifest_is_corrupt(manifest_bytes: bytes) -> None:
    with pytest.raises(CorruptStoreError, match="m.json is not a readable manifest.*truncated"):
        decode(manifest_bytes[: len(manifest_bytes) // 2], StoreManifest, source="m.json")


def test_wrong_types_name_the_field(manifest_bytes: bytes) -> None:
    doc = json.loads(manifest_bytes)
    doc["parts"][0]["rows"] = "many"
    with pytest.raises(
        CorruptStoreError,
        match=r"m.json is damaged: Expected `int`, got `str` - at `\$.parts\[0\].rows`",
    ):
        decode(json.dumps(doc).encode(), StoreManifest, source="m.json")


def test_negative_counts_are_refused(manifest_bytes: bytes) -> None:
    doc = json.loads(manifest_bytes)
    doc["rows"] = -1
    with pytest.raises(CorruptStoreError, match="rows"):
        decode(json.dumps(doc).encode(), StoreManifest, source="m")


def test_newer_format_version_asks_for_an_upgrade(manifest_bytes: bytes) -> None:
    doc = json.loads(manifest_bytes)
    doc["format_version"] = 99
    doc["something_new"] = {"x": 1}
    with pytest.raises(FormatVersionError, match="format version 99.*upgrade predstore"):
        decode(json.dumps(doc).encode(), StoreManifest, source="m")


def test_foreign_json_is_not_a_manifest() -> None:
    with pytest.raises(CorruptStoreError, match="not a predstore manifest"):
        decode(b'{"format": "zarr", "format_version": 1}', StoreManifest, source="m")


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "writes/../../x"])
def test_paths_outside_the_store_are_corrupt(manifest_bytes: bytes, path: str) -> None:
    doc = json.loads(manifest_bytes)
    doc["parts"][0]["path"] = path
    with pytest.raises(CorruptStoreError, match="inside the store"):
        decode(json.dumps(doc).encode(), StoreManifest, source="m")


def test_array_file_paths_are_checked_too(manifest_bytes: bytes) -> None:
    doc = json.loads(manifest_bytes)
    doc["arrays"][0]["files"] = {"../outside": 3}
    with pytest.raises(CorruptStoreError, match="inside the store"):
        decode(json.dumps(doc).encode(), StoreManifest, source="m")


def test_rank_manifest_decodes(tmp_path: Path) -> None:
    write_id = write_ranks(tmp_path / "s", [list(range(10))])
    data = (tmp_path / "s" / "writes" / write_id / "rank-00000.json").read_bytes()
    rank = decode(data, RankManifest, source="r")
    assert rank.state == "closed" and rank.rows == 10
