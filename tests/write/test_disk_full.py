"""A full disk: a clear error, and the previous commit intact.

On a real size-limited file system (a small tmpfs, when this process may
mount one), and by injecting ENOSPC into predstore's file layer otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

import predstore
from predstore.format.fs import LocalFileSystem
from support import assert_rows, batch


class FillingFileSystem(LocalFileSystem):
    """A local store that runs out of space after ``budget`` more bytes."""

    def __init__(self, root: Path, budget: int) -> None:
        super().__init__(root)
        self.budget = budget

    def _spend(self, n: int) -> None:
        self.budget -= n
        if self.budget < 0:
            raise OSError(errno.ENOSPC, "No space left on device")

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        with super().open_atomic(path) as file:
            write = file.write

            def limited(data):  # type: ignore[no-untyped-def]
                self._spend(memoryview(data).nbytes)
                return write(data)

            file.write = limited  # type: ignore[method-assign]
            yield file

    def replace(self, path: str, data: bytes) -> None:
        self._spend(len(data))
        super().replace(path, data)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        self._spend(len(data))
        return super().put_if_absent(path, data)


def write_until_full(path: Path, filesystem: LocalFileSystem | None = None) -> BaseException:
    with predstore.StoreWriter(
        path, mode="append", filesystem=filesystem, shard_bytes=8 * 1200
    ) as writer:
        for start in range(1000, 100_000, 8):
            try:
                writer.write(batch(range(start, start + 8)), range(start, start + 8))
            except OSError as e:
                writer.fail()
                return e
    raise AssertionError("the disk never filled")


class FullShardsFileSystem(FillingFileSystem):
    """Space runs out while a Zarr shard is written (on the writer's I/O thread)."""

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        if "/c/" not in path:
            with LocalFileSystem.open_atomic(self, path) as file:
                yield file
            return
        with super().open_atomic(path) as file:
            yield file


@pytest.mark.parametrize(
    ("filesystem", "budget"), [(FillingFileSystem, 200_000), (FullShardsFileSystem, 100_000)]
)
def test_enospc_is_a_clear_error_and_the_last_commit_stays(
    tmp_path: Path, filesystem: type[FillingFileSystem], budget: int
) -> None:
    path = tmp_path / "s"
    with predstore.StoreWriter(path) as writer:
        writer.write(batch(range(40)), range(40))
    error = write_until_full(path, filesystem(path, budget=budget))
    assert error.errno == errno.ENOSPC
    notes = " ".join(getattr(error, "__notes__", []))
    assert "predstore: writing writes/" in notes and ".parquet of " in notes  # the part
    assert "rows this rank committed before it are intact" in notes
    store = predstore.open(path)
    assert_rows(store, range(40))  # generation 1, untouched
    assert store.manifest.generation == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({done.stderr.decode().strip()}); the injected ENOSPC test covers it"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk(small_disk: Path) -> None:
    path = small_disk / "s"
    with predstore.StoreWriter(path, shard_bytes=8 * 1200) as writer:
        writer.write(batch(range(40)), range(40))
    error = write_until_full(path)
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    store = predstore.open(path)
    assert_rows(store, range(40))
    assert np.array_equal(store.read("logits", [39]), batch([39])["logits"])
