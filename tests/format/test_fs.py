from __future__ import annotations

import os
from pathlib import Path

import pytest

from predstore.errors import CorruptStoreError
from predstore.format.fs import TEMP_MARKER, LocalFileSystem


def test_replace_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    fs.replace("a/b.json", b"one")
    fs.replace("a/b.json", b"two")
    assert fs.read_bytes("a/b.json") == b"two"
    assert os.listdir(tmp_path / "a") == ["b.json"]


def test_put_if_absent_creates_once(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    assert fs.put_if_absent("x/1.json", b"first")
    assert not fs.put_if_absent("x/1.json", b"second")
    assert fs.read_bytes("x/1.json") == b"first"
    assert os.listdir(tmp_path / "x") == ["1.json"]


def test_open_atomic_publishes_only_on_success(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    with fs.open_atomic("p/ok.bin") as f:
        f.write(b"data")
        assert not (tmp_path / "p" / "ok.bin").exists()
    assert fs.read_bytes("p/ok.bin") == b"data"
    with pytest.raises(RuntimeError), fs.open_atomic("p/bad.bin") as f:
        f.write(b"half")
        raise RuntimeError("writer died")
    assert sorted(os.listdir(tmp_path / "p")) == ["ok.bin"]


def test_temporary_files_carry_the_marker(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    with fs.open_atomic("t.bin") as f:
        names = os.listdir(tmp_path)
        f.write(b"x")
    assert len(names) == 1 and TEMP_MARKER in names[0]


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", ".", ""])
def test_paths_outside_the_store_are_refused(tmp_path: Path, path: str) -> None:
    fs = LocalFileSystem(tmp_path / "store")
    with pytest.raises(CorruptStoreError, match="inside the store"):
        fs.read_bytes(path) if path else fs.resolve("/")


def test_a_symlink_out_of_the_store_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    store = tmp_path / "store"
    store.mkdir()
    (store / "link").symlink_to(outside)
    fs = LocalFileSystem(store)
    with pytest.raises(CorruptStoreError, match="outside the store"):
        fs.read_bytes("link/secret")
    with pytest.raises(CorruptStoreError, match="outside the store"):
        fs.delete_tree("link")
    assert (outside / "secret").exists()


def test_list_size_exists_and_delete_tree(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    fs.replace("d/a", b"12345")
    fs.replace("d/e/b", b"1")
    assert fs.list("d") == ["a", "e"]
    assert fs.list("missing") == []
    assert fs.size("d/a") == 5
    assert fs.exists("d/e") and not fs.exists("d/z")
    fs.delete_tree("d")
    assert not fs.exists("d")
    fs.delete_tree("d")  # a missing path is not an error


def test_only_regular_files_are_read_and_never_waited_on(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for path in ("fifo", "dir"):
        for read in (fs.read_bytes, fs.size, fs.input_uri, lambda p: fs.read_range(p, 0, 4)):
            with pytest.raises(CorruptStoreError, match=f"{path} is not a regular file"):
                read(path)  # a FIFO opened for reading would block here without a writer


def test_metadata_over_its_limit_is_refused_unread(tmp_path: Path) -> None:
    fs = LocalFileSystem(tmp_path)
    fs.replace("m.json", b"{}" * 10)
    assert fs.read_metadata("m.json", 20) == b"{}" * 10
    with pytest.raises(CorruptStoreError, match="m.json is 20 bytes, larger than the 19 bytes"):
        fs.read_metadata("m.json", 19)
