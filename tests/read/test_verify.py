from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import predstore
from predstore.read.verify import verify
from support import write_mixed, write_ranks


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "s"
    write_ranks(
        path, [list(range(0, 90, 2)), list(range(1, 90, 2))], shard_bytes=16 * 1200, batch_size=10
    )
    return path


def test_a_sound_store_verifies(path: Path) -> None:
    report = verify(path, deep=True)
    assert report.ok, report.problems
    assert report.generation == 1 and report.rows == 90
    assert report.files_checked >= 8


def _shard(path: Path) -> Path:
    return next(
        p for p in sorted(path.rglob("*")) if p.is_file() and "c" in p.relative_to(path).parts
    )


def test_a_missing_shard_is_reported(path: Path) -> None:
    shard = _shard(path)
    shard.unlink()
    report = verify(path)
    assert not report.ok
    assert any("is missing" in p and shard.name in p for p in report.problems)


def test_a_resized_file_is_reported(path: Path) -> None:
    part = next(path.rglob("*.parquet"))
    part.write_bytes(part.read_bytes() + b"junk")
    report = verify(path)
    assert any(f"{part.name} has" in p and "the manifest says" in p for p in report.problems)


def test_a_damaged_shard_fails_the_deep_check(path: Path) -> None:
    shard = _shard(path)
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    data[-20] ^= 0xFF  # the shard index is checksummed
    shard.write_bytes(bytes(data))
    assert verify(path).ok  # sizes still match
    report = verify(path, deep=True)
    assert any(shard.name in p and "damaged" in p for p in report.problems), report.problems


@pytest.mark.corrupts_manifests
def test_coverage_figures_must_hold(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["coverage"]["0"]["unique"] = 91
    manifest["rows"] = 91
    (path / "manifest.json").write_text(json.dumps(manifest))
    report = verify(path)
    assert any("coverage does not match" in p for p in report.problems)
    assert any("says 91 rows" in p for p in report.problems)


@pytest.mark.corrupts_manifests
def test_an_unlisted_shard_with_committed_rows_is_reported(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    files = manifest["arrays"][0]["files"]
    files.pop(sorted(files)[0])
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert any("holds committed rows but is not listed" in p for p in verify(path).problems)


def test_an_uncommitted_store_is_not_ok(tmp_path: Path) -> None:
    report = verify(tmp_path / "nothing")
    assert not report.ok and "does not exist" in report.problems[0]


def test_unfinished_writes_are_reported_with_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write_ranks(path, [[0, 1, 2], [3, 4]], finalize=False)
    report = verify(path)
    assert not report.ok
    (unfinished,) = report.unfinished
    assert (
        unfinished.rows == 5
        and unfinished.recoverable
        and unfinished.ranks == {0: "closed", 1: "closed"}
    )


# -- checksums: verify --deep finds damage that keeps every size -------------------------


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    path = tmp_path / "mixed"
    write_mixed(path)
    return path


def _flip_middle(path: Path, end: int) -> None:
    """Flip one byte halfway into the first ``end`` bytes of ``path``."""
    data = bytearray(path.read_bytes())
    data[end // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _key_shard(path: Path, key: str) -> Path:
    array = next(p for p in path.rglob(key) if (p / "zarr.json").exists())
    return sorted(p for p in (array / "c").rglob("*") if p.is_file())[0]


def _flip_in_a_page(part: Path) -> None:
    """Flip one byte in the middle of the data of the part's ``prob`` column."""
    import pyarrow.parquet as pq

    meta = pq.read_metadata(part).row_group(0)
    column = next(
        meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == "prob"
    )
    data = bytearray(part.read_bytes())
    data[column.data_page_offset + column.total_compressed_size // 2] ^= 0x01
    part.write_bytes(bytes(data))


def _data_bytes(shard: Path) -> int:
    """Bytes of a shard before its index (the inner chunks)."""
    chunks = (len(shard.read_bytes()) - 4) // 16
    while True:  # the index is chunks * 16 + 4 bytes: find the count whose table ends the data
        table = np.frombuffer(shard.read_bytes()[-4 - 16 * chunks : -4], "<u8").reshape(-1, 2)
        present = table[:, 0] != np.iinfo(np.uint64).max
        if (
            present.any()
            and int((table[present].sum(axis=1)).max()) == len(shard.read_bytes()) - 4 - 16 * chunks
        ):
            return len(shard.read_bytes()) - 4 - 16 * chunks
        chunks -= 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: _flip_in_a_page(next(p.rglob("*.parquet"))),
        lambda p: _flip_middle(s := _key_shard(p, "logits"), _data_bytes(s)),
        lambda p: _flip_middle(s := _key_shard(p, "mask"), _data_bytes(s)),
        lambda p: _flip_middle(s := _key_shard(p, "tokens"), _data_bytes(s)),
    ],
    ids=["parquet", "uncompressed-shard", "zstd-shard", "zstd-ragged-shard"],
)
def test_one_flipped_byte_fails_the_deep_check(mixed: Path, damage) -> None:  # type: ignore[no-untyped-def]
    damage(mixed)
    assert verify(mixed).ok  # every size still matches
    report = verify(mixed, deep=True)
    assert any("checksum" in p for p in report.problems), report.problems


def test_swapped_inner_chunks_fail_the_deep_check(mixed: Path) -> None:
    shard = _key_shard(mixed, "logits")
    data = bytearray(shard.read_bytes())
    chunk = 2 * 300 * 4 + 4  # two rows of float32[300] and their crc32c
    first, second = bytes(data[:chunk]), bytes(data[chunk : 2 * chunk])
    data[:chunk], data[chunk : 2 * chunk] = second, first
    shard.write_bytes(bytes(data))
    assert verify(mixed).ok
    report = verify(mixed, deep=True)
    assert any(shard.name in p and "checksum" in p for p in report.problems), report.problems


def test_a_flipped_byte_in_a_shard_fails_the_read_that_touches_it(mixed: Path) -> None:
    shard = _key_shard(mixed, "logits")
    _flip_middle(shard, _data_bytes(shard))
    store = predstore.open(mixed)
    with pytest.raises(predstore.CorruptStoreError, match="checksum does not match"):
        store.read("logits")
    assert store.read("logits", [63]).shape == (1, 300)  # other shards still read


def test_a_sound_mixed_store_verifies_deep(mixed: Path) -> None:
    report = verify(mixed, deep=True)
    assert report.ok, report.problems
    manifest = json.loads((mixed / "manifest.json").read_text())
    assert all(isinstance(p["crc32c"], int) for p in manifest["parts"])
    assert all(set(a["checksums"]) == set(a["files"]) for a in manifest["arrays"])
