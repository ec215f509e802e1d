"""SIGKILL a job at a chosen moment of predstore's file operations (test jobs only).

``arm("shard-write:3")`` makes the process kill itself (and its process
group, as a node failure would) at the 3rd occurrence of that moment:

- ``part-write``: in the middle of writing a Parquet part's temporary file;
- ``shard-write``: in the middle of writing a Zarr shard's temporary file;
- ``rename``: with a data file complete under its temporary name, before its rename;
- ``rank-manifest``: with a rank manifest's new content written, before its rename;
- ``decide``: after a store commit was decided (``_commits/<g>``), before it is published;
- ``publish``: while publishing the store manifest (before its conditional replace);
- ``finalize``: when finalize starts.

It patches predstore's file layer from outside; the library has no hook.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import IO, Any

KINDS = ("part-write", "shard-write", "rename", "rank-manifest", "decide", "publish", "finalize")


def die() -> None:
    """Kill the whole process group at once, with no chance to clean up."""
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


class _Counter:
    def __init__(self, kind: str, count: int) -> None:
        self.kind, self.count, self.seen = kind, count, 0

    def hit(self, kind: str) -> None:
        if kind == self.kind:
            self.seen += 1
            if self.seen >= self.count:
                die()


class _HalfWritten:
    """A file that dies after writing half of the call that crosses the counter."""

    def __init__(self, file: IO[bytes], counter: _Counter, kind: str) -> None:
        self._file, self._counter, self._kind = file, counter, kind

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self._counter.kind == self._kind and self._counter.seen + 1 >= self._counter.count:
            self._file.write(view[: len(view) // 2])
            self._file.flush()
        self._counter.hit(self._kind)
        return self._file.write(view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def arm(spec: str | None) -> None:
    """Install the crash point ``KIND:COUNT`` (nothing for ``None`` or an empty spec)."""
    if not spec:
        return
    kind, count = spec.split(":")
    if kind not in KINDS:
        raise ValueError(f"unknown crash point {kind!r}; one of {KINDS}")
    counter = _Counter(kind, int(count))

    from predstore.format import commit as commit_module
    from predstore.format import fs as fs_module

    for cls in (fs_module.LocalFileSystem, fs_module.ObjectFileSystem):
        _patch(cls, counter)

    original_finalize = commit_module.finalize

    def patched_finalize(*args: Any, **kwargs: Any) -> Any:
        counter.hit("finalize")
        return original_finalize(*args, **kwargs)

    for module in list(sys.modules.values()):  # every module that imported finalize by name
        if getattr(module, "finalize", None) is original_finalize:
            module.finalize = patched_finalize


def _patch(cls: Any, counter: _Counter) -> None:
    """Crash points in the file operations of the file system class ``cls``."""
    open_atomic, replace, put_if_absent = cls.open_atomic, cls.replace, cls.put_if_absent
    replace_if = cls.replace_if

    @contextlib.contextmanager
    def patched_open_atomic(self: Any, path: str) -> Iterator[Any]:
        kind = "part-write" if path.endswith(".parquet") else "shard-write"
        with open_atomic(self, path) as file:
            yield _HalfWritten(file, counter, kind)
            counter.hit("rename")

    def patched_replace(self: Any, path: str, data: bytes) -> None:
        if path.endswith(".json") and "/rank-" in path:
            counter.hit("rank-manifest")
        if path == "manifest.json":
            counter.hit("publish")
        replace(self, path, data)

    def patched_replace_if(self: Any, path: str, data: bytes, version: str) -> bool:
        if path == "manifest.json":
            counter.hit("publish")
        return replace_if(self, path, data, version)

    def patched_put(self: Any, path: str, data: bytes) -> bool:
        if path == "manifest.json":
            counter.hit("publish")
        created = put_if_absent(self, path, data)
        if path.startswith("_commits/"):
            counter.hit("decide")
        return created

    cls.open_atomic = patched_open_atomic
    cls.replace = patched_replace
    cls.put_if_absent = patched_put
    cls.replace_if = patched_replace_if
