from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import predstore
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


def test_keys_differing_only_in_case_get_folders_that_differ_without_case() -> None:
    keys = ["logits", "Logits", "LOGITS", "logitS", "%4Cogits", "é", "É"]
    names = [layout.key_file_name(k) for k in keys]
    assert len({n.casefold() for n in names}) == len(keys)
    assert layout.key_file_name("logits") == "logits"  # lower-case keys keep their own name


def test_a_write_of_keys_differing_in_case_keeps_folders_apart(tmp_path: Path) -> None:
    # Read back too: on a case-insensitive disk one folder would hold both keys' chunks.
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"Emb": np.ones((2, 64), "f4"), "emb": np.zeros((2, 64), "f4")}, [0, 1])
    folders = [p.name for p in (tmp_path / "s").glob("writes/*/arrays/r00000/*")]
    assert len({f.casefold() for f in folders}) == 2
    store = predstore.open(tmp_path / "s")
    assert store.read("Emb").sum() == 128 and store.read("emb").sum() == 0


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
