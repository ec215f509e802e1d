"""Atomic replacement of run-directory files."""

from __future__ import annotations

from pathlib import Path

import pytest

from predstore.registry._atomic import atomic_write, is_temp_of, temp_path_for


def test_replaces_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_a_failed_replace_keeps_the_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.mkdir()  # a directory cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        atomic_write(target, b"{}")
    assert target.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_temporary_names_are_recognised(tmp_path: Path) -> None:
    tmp = temp_path_for(tmp_path / "sidecar.json")
    assert tmp.parent == tmp_path
    assert is_temp_of(tmp.name, "sidecar.json")
    assert is_temp_of("sidecar.json.tmp", "sidecar.json")
    assert not is_temp_of("sidecar.json", "sidecar.json")
    assert not is_temp_of("summary.json.1-ab.tmp", "sidecar.json")
    assert not is_temp_of("sidecar.json.corrupt-17", "sidecar.json")
