"""The one place where predstore touches storage.

Every file operation of the format goes through a :class:`FileSystem`: write a
file under a temporary name and move it into place, create a file only if it
is absent, read, size, list (writers and recovery only; readers never list)
and delete. Paths are store-relative POSIX paths checked by
:func:`predstore.format.layout.check_relpath`, so a manifest can never make
predstore touch anything outside its store. Only regular files are read (a
FIFO or a device in a store is refused, never waited on), and metadata files
are read through :meth:`FileSystem.read_metadata`, which refuses a file
larger than its limit before reading it.

:class:`LocalFileSystem` implements the contract on a local or network-mounted
directory. An object-store implementation plugs in here without touching the
writer or the reader: ``put_if_absent`` becomes a conditional put, and
``open_atomic`` an upload that becomes visible only when complete.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from typing import IO, Any

import crc32c as _crc32c

from predstore.errors import CorruptStoreError, StorePermissionError
from predstore.format.layout import check_relpath

TEMP_MARKER = ".tmp-"
"""Temporary files carry this marker in their name; they are never part of a store."""


class FileSystem(abc.ABC):
    """What a store needs from its storage. All paths are relative to the store root."""

    root: str

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The whole content of ``path``; ``FileNotFoundError`` if absent."""

    @abc.abstractmethod
    def read_range(self, path: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``start`` (fewer at its end)."""

    @abc.abstractmethod
    def replace(self, path: str, data: bytes) -> None:
        """Atomically make ``path`` hold ``data`` (temporary file, fsync, rename)."""

    @abc.abstractmethod
    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists; ``True`` when created."""

    @abc.abstractmethod
    def open_atomic(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary file that appears at ``path`` only when the block exits cleanly."""

    @abc.abstractmethod
    def size(self, path: str) -> int:
        """Size in bytes of ``path``; ``FileNotFoundError`` if absent."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (file or directory)."""

    @abc.abstractmethod
    def list(self, path: str) -> list[str]:
        """Names directly under the directory ``path`` (empty when absent)."""

    @abc.abstractmethod
    def delete_tree(self, path: str) -> None:
        """Remove ``path`` and everything under it; a missing path is not an error."""

    @abc.abstractmethod
    def uri(self, path: str) -> str:
        """The location of ``path`` as pyarrow, polars and DuckDB open it."""

    @abc.abstractmethod
    def zarr_store(self, path: str, *, read_only: bool) -> Any:
        """A ``zarr.abc.store.Store`` rooted at the directory ``path`` (one array)."""

    def read_metadata(self, path: str, limit: int) -> bytes:
        """The whole of the metadata file ``path``, refused if it is larger than ``limit`` bytes."""
        size = self.size(path)
        if size > limit:
            raise CorruptStoreError(
                f"{path} is {size} bytes, larger than the {limit} bytes predstore reads as "
                "metadata; the file is damaged or not predstore's"
            )
        return self.read_bytes(path)

    def input_uri(self, path: str) -> str:
        """:meth:`uri` of a file that pyarrow or polars will read, after checking it is readable."""
        self.size(path)
        return self.uri(path)


class LocalFileSystem(FileSystem):
    """A store in a directory of a local or network-mounted file system.

    ``durable=True`` fsyncs every data file before it is renamed into place, so
    a commit also survives a power loss or kernel crash; without it a commit
    survives the death of the process at any moment (what preemption does),
    and manifests are always fsynced.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self._real_root = os.path.realpath(self.root)

    def __repr__(self) -> str:
        return f"LocalFileSystem({self.root!r})"

    def resolve(self, path: str) -> str:
        """The absolute path of ``path``, refusing anything that leads outside the root."""
        full = os.path.join(self.root, *check_relpath(path).split("/")) if path else self.root
        real = os.path.realpath(full)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise CorruptStoreError(
                f"{path!r} leads outside the store {self.root!r} (through a symbolic link); "
                "predstore only reads and writes inside its store"
            )
        return full

    def read_bytes(self, path: str) -> bytes:
        with self._open_file(path) as (fd, size):
            return _pread_all(fd, size, 0)

    def read_range(self, path: str, start: int, length: int) -> bytes:
        with self._open_file(path) as (fd, size):
            return _pread_all(fd, min(length, max(0, size - start)), start)

    def input_uri(self, path: str) -> str:
        with self._open_file(path):
            return self.resolve(path)

    @contextlib.contextmanager
    def _open_file(self, path: str) -> Iterator[tuple[int, int]]:
        """A descriptor of the regular file ``path`` and its size.

        Opened without blocking (a FIFO would wait for a writer forever) and
        checked to be a regular file before a byte is read.
        """
        try:
            fd = os.open(self.resolve(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            raise _denied(path) from None
        try:
            info = os.fstat(fd)
            _check_regular(path, info)
            yield fd, info.st_size
        finally:
            os.close(fd)

    def replace(self, path: str, data: bytes) -> None:
        full = self.resolve(path)
        rename_into_place(_durable_temp(full, data), full)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        full = self.resolve(path)
        tmp = _durable_temp(full, data)
        try:
            # link() fails when the target exists: an atomic create-if-absent
            # that also works on NFS, unlike O_EXCL on some old servers.
            os.link(tmp, full)
        except FileExistsError:
            return False
        finally:
            _remove_quietly(tmp)
        _fsync_dir(os.path.dirname(full))
        return True

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        full = self.resolve(path)
        tmp = _temp_name(full)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                yield f
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, full)
        except BaseException:
            _remove_quietly(tmp)
            raise

    def size(self, path: str) -> int:
        try:
            info = os.stat(self.resolve(path))
        except PermissionError:
            raise _denied(path) from None
        _check_regular(path, info)
        return info.st_size

    def exists(self, path: str) -> bool:
        return os.path.exists(self.resolve(path))

    def list(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.resolve(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete_tree(self, path: str) -> None:
        full = self.resolve(path)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full, ignore_errors=True)
        else:
            _remove_quietly(full)

    def uri(self, path: str) -> str:
        return self.resolve(path)

    def zarr_store(self, path: str, *, read_only: bool) -> Any:
        from zarr.storage import LocalStore

        # One store per array: zarr then writes no group metadata above it,
        # and every file it writes belongs to the array's own rank.
        return LocalStore(self.resolve(path), read_only=read_only)


def crc32c(data: Any, crc: int = 0) -> int:
    """The CRC-32C of the bytes of ``data`` (any buffer), continuing from ``crc``.

    The ``crc32c`` library computes it in hardware and, unlike zarr's
    ``google-crc32c``, releases the GIL: chunks are checked in parallel on the
    decode pool.
    """
    return int(_crc32c.crc32c(data, crc))


class ChecksumSink:
    """A binary file being written that keeps the CRC-32C of every byte written through it."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self.crc32c = 0

    def write(self, data: Any) -> int:
        self.crc32c = crc32c(data, self.crc32c)
        return self._sink.write(data)

    def __getattr__(self, name: str) -> Any:  # tell, flush, closed, ...: the file's own
        return getattr(self._sink, name)


def file_crc32c(fs: FileSystem, path: str, size: int, block: int = 8 << 20) -> int:
    """The CRC-32C of the first ``size`` bytes of ``path``, read in blocks through ``fs``."""
    crc = 0
    for start in range(0, size, block):
        crc = crc32c(fs.read_range(path, start, min(block, size - start)), crc)
    return crc


def _check_regular(path: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise CorruptStoreError(
            f"{path} is not a regular file (a directory, FIFO, socket or device); "
            "a store holds only regular files: the store is damaged or was tampered with"
        )


def _denied(path: str) -> StorePermissionError:
    return StorePermissionError(
        f"{path}: permission denied; make the store's files readable by this user "
        "(chmod, chown) or read the store as their owner"
    )


def _pread_all(fd: int, length: int, start: int) -> bytes:
    """``length`` bytes from ``start`` (fewer only at the end of the file)."""
    data = os.pread(fd, length, start)
    if len(data) == length or not data:
        return data
    pieces = [data]
    while length > (got := sum(map(len, pieces))):
        more = os.pread(fd, length - got, start + got)
        if not more:
            break
        pieces.append(more)
    return b"".join(pieces)


def write_new_file(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` (a temporary file) and flush it to disk unless ``fsync=False``.

    On any failure the file is removed again. With :func:`rename_into_place`
    this is the one atomic replacement of a local file, for the store's
    files here and for the run registry's (which names its temporary files
    its own way).
    """
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except BaseException:
        _discard(path)
        raise


def rename_into_place(
    tmp: str | os.PathLike[str], path: str | os.PathLike[str], *, fsync: bool = True
) -> None:
    """Rename ``tmp`` onto ``path`` and make the rename durable; on failure remove ``tmp``."""
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if fsync:
        _fsync_dir(os.path.dirname(os.fspath(path)))


def _durable_temp(full: str, data: bytes) -> str:
    """A fsynced temporary file beside ``full`` holding ``data``; its name."""
    tmp = _temp_name(full)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    write_new_file(tmp, data)
    return tmp


def _temp_name(full: str) -> str:
    head, name = os.path.split(full)
    return os.path.join(head, f".{name}{TEMP_MARKER}{uuid.uuid4().hex[:12]}")


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _discard(path: str | os.PathLike[str]) -> None:
    # Cleanup after a failure: an error here must not hide the original one.
    with contextlib.suppress(OSError):
        os.unlink(path)


def _fsync_dir(path: str) -> None:
    # Make the rename itself durable; some file systems refuse to open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
