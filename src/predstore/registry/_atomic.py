"""Atomic file replacement: write a temporary sibling, fsync it, rename it into place.

A reader of the target path sees either the old content or the new content,
never a torn file; a crash leaves at most a stray ``<name>.<pid>-<hex>.tmp``
beside it, which every reader of a run directory ignores.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temp_path_for(path: Path) -> Path:
    """A unique temporary sibling of ``path``: ``<name>.<pid>-<hex>.tmp``."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp_of(name: str, target: str) -> bool:
    """Whether the file name ``name`` is a temporary file of ``target``."""
    return name.startswith(target + ".") and name.endswith(TEMP_SUFFIX)


def write_temp(path: Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to a fresh temporary sibling of ``path`` and return it."""
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except BaseException:
        discard(tmp)
        raise
    return tmp


def commit_temp(tmp: Path, path: Path, *, fsync: bool = True) -> None:
    """Rename ``tmp`` onto ``path`` and make the rename durable."""
    try:
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically."""
    commit_temp(write_temp(path, data, fsync=fsync), path, fsync=fsync)


def discard(path: Path) -> None:
    """Remove ``path`` if it exists; a failure here must not hide the original error."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry change; some filesystems cannot, which is not an error."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
