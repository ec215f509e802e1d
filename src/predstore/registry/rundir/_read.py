"""Reading a run directory's files without trusting them: regular files only, bounded in size
and nesting, so that one bad run never blocks or crashes a scan of all the others."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from predstore.errors import CorruptRunError

MAX_BYTES = 64 << 20
"""The largest run file read (a summary of thousands of metrics is a few MiB)."""


def read_regular(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    Opened without blocking, so a FIFO or a device never hangs the caller.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CorruptRunError: if it is not a regular file, or is larger than ``limit``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptRunError(
                f"{path} is not a regular file (a FIFO, device or socket?); remove or rename it"
            )
        if info.st_size > limit:
            raise CorruptRunError(f"{path} holds {info.st_size:,} bytes, more than {limit:,}")
        return file.read(limit + 1)[: limit + 1]


def parse_json(data: bytes | str, path: Path) -> Any:
    """The JSON document in ``data``, or ``CorruptRunError`` naming ``path``."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptRunError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CorruptRunError(f"{path} is not valid JSON: it is nested too deeply") from None
