"""read_part: the one reader of committed Parquet parts, checked against the manifest."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

import predstore
from predstore.format.fs import LocalFileSystem
from predstore.format.parquet import read_part
from predstore.format.schema import INDEX
from support import write_ranks


def test_reads_the_asked_columns_of_a_part(tmp_path: Path) -> None:
    write_ranks(tmp_path / "s", [[3, 1, 2]])
    store = predstore.open(tmp_path / "s")
    table = read_part(store.fs, store.manifest.parts[0], [INDEX])
    assert table.column_names == [INDEX]
    assert sorted(table.column(INDEX).to_pylist()) == [1, 2, 3]


@pytest.mark.corrupts_manifests
def test_a_part_with_other_rows_than_its_manifest_says_is_corrupt(tmp_path: Path) -> None:
    write_ranks(tmp_path / "s", [[0, 1, 2]])
    part = predstore.open(tmp_path / "s").manifest.parts[0]
    liar = msgspec.structs.replace(part, rows=5)
    with pytest.raises(predstore.CorruptStoreError, match=r"holds 3 rows, its manifest says 5"):
        read_part(LocalFileSystem(tmp_path / "s"), liar, [INDEX])


def test_an_unreadable_part_names_its_file(tmp_path: Path) -> None:
    write_ranks(tmp_path / "s", [[0, 1]])
    part = predstore.open(tmp_path / "s").manifest.parts[0]
    (tmp_path / "s" / part.path).write_bytes(b"not parquet")
    with pytest.raises(
        predstore.CorruptStoreError, match=rf"part {part.path} is not readable Parquet"
    ):
        read_part(LocalFileSystem(tmp_path / "s"), part, [INDEX])
