"""Atomic replacement of a run directory's files, with the registry's temporary names.

The writing and renaming are :mod:`predstore.format.fs`'s; what is the
registry's own is the temporary name, part of the run-directory format.

A reader of the target path sees either the old content or the new content,
never a torn file; a crash leaves at most a stray ``<name>.<pid>-<hex>.tmp``
beside it, which every reader of a run directory ignores.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from predstore.format.fs import rename_into_place, write_new_file

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
    write_new_file(tmp, data, fsync=fsync)
    return tmp


def commit_temp(tmp: Path, path: Path, *, fsync: bool = True) -> None:
    """Rename ``tmp`` onto ``path`` and make the rename durable.

    A failure names ``path``, the file the caller asked for, not the temporary one.
    """
    try:
        rename_into_place(tmp, path, fsync=fsync)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from e


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically; on failure, no temporary file is left."""
    tmp = write_temp(path, data, fsync=fsync)
    try:
        commit_temp(tmp, path, fsync=fsync)
    except BaseException:
        discard(tmp)
        raise


def discard(path: Path) -> None:
    """Remove ``path`` if it exists; a failure here must not hide the original error."""
    with contextlib.suppress(OSError):
        os.unlink(path)
