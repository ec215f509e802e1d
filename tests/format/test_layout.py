from __future__ import annotations

import re

import pytest

from predstore.errors import CorruptStoreError
from predstore.format import layout


def test_paths_are_owned_by_one_write_and_rank() -> None:
    assert layout.rank_manifest("w1", 3) == "writes/w1/rank-00003.json"
    assert layout.part("w1", 3, 12) == "writes/w1/parts/r00003-000012.parquet"
    assert layout.array("w1", 3, "det.boxes") == "writes/w1/arrays/r00003/det.boxes"
    assert layout.commit_record(7) == "_commits/0000000007.json"


@pytest.mark.parametrize("key", ["../../etc/passwd", "a/b", "..", "x y", "é"])
def test_keys_never_become_paths(key: str) -> None:
    path = layout.array("w", 0, key)
    name = path.rsplit("/", 1)[1]
    assert "/" not in name and name not in (".", "..")
    assert layout.check_relpath(path) == path


def test_new_write_ids_are_unique_and_sortable() -> None:
    ids = {layout.new_write_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{12}", i) for i in ids)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "x" * 200, 5])
def test_bad_write_ids_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="write_id"):
        layout.check_write_id(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["/abs", "a/../b", "..", "a/./b", "a//b", "a\\b", "a\x00b", ""])
def test_check_relpath_refuses_escapes(bad: str) -> None:
    with pytest.raises(CorruptStoreError, match="relative path inside the store"):
        layout.check_relpath(bad)
