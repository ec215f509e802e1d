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
directory. :class:`ObjectFileSystem` implements it on an object store
(``s3://``, ``gs://``, ``az://``) through obstore, the Python bindings of the
Rust ``object_store`` crate: ``put_if_absent`` is a conditional put
(``If-None-Match: *``), ``replace_if`` a put conditional on the version read
(``If-Match: <etag>``), ``open_atomic`` an upload that becomes visible only
when complete, and ``read_range`` a ranged GET. Nothing in the format needs a
rename. :func:`filesystem_for` turns what a user passes as a store's location
into one of the two.

Why obstore: it speaks S3, GCS and Azure with one code path, has conditional
puts, multipart uploads that are aborted on failure, parallel coalesced range
reads and bounded retries with backoff, releases the GIL for every request,
and is what zarr's ``ObjectStore`` and polars' cloud reader are built on, so
one set of ``storage_options`` serves all three (the client comparison is in
``benchmarks/object_store.py``).
"""

from __future__ import annotations

import abc
import contextlib
import datetime as _dt
import fcntl
import functools
import hashlib
import io
import mmap
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any, ClassVar

import crc32c as _crc32c

from predstore.errors import ConfigError, CorruptStoreError, StorageError, StorePermissionError
from predstore.format.layout import check_relpath

TEMP_MARKER = ".tmp-"
"""Temporary files carry this marker in their name; they are never part of a store."""


class FileSystem(abc.ABC):
    """What a store needs from its storage. All paths are relative to the store root."""

    root: str
    is_local = True
    """Whether a stat costs a system call rather than a request over the network."""
    can_map = False
    """Whether :meth:`map_file` maps files (else it returns ``None``)."""

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes:
        """The whole content of ``path``; ``FileNotFoundError`` if absent."""

    @abc.abstractmethod
    def read_range(self, path: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``start`` (fewer at its end)."""

    def read_ranges(self, path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
        """Several byte ranges of ``path`` (an object store fetches them in parallel)."""
        return [self.read_range(path, s, n) for s, n in zip(starts, lengths, strict=True)]

    def map_file(self, path: str) -> memoryview | None:
        """The bytes of ``path`` mapped read-only into memory, or ``None`` where files cannot be.

        Only for files that are never changed in place once written (a
        committed shard): the mapping reads the page cache without copying.
        """
        return None

    def arrow_source(self, path: str) -> Any:
        """``path`` as pyarrow opens it: a local path, or the object's bytes in a buffer."""
        import pyarrow as pa

        return pa.BufferReader(self.read_bytes(path))

    def polars_options(self) -> dict[str, str] | None:
        """The ``storage_options`` polars needs to read files of this store."""
        return None

    @abc.abstractmethod
    def replace(self, path: str, data: bytes) -> None:
        """Atomically make ``path`` hold ``data`` (temporary file, fsync, rename)."""

    @abc.abstractmethod
    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists; ``True`` when created."""

    def read_versioned(self, path: str) -> tuple[bytes, str]:
        """The content of ``path`` and an opaque tag of that version (an object store's ETag).

        ``FileNotFoundError`` if absent. The default tags a version by its
        content; implementations with native versions override it.
        """
        data = self.read_bytes(path)
        return data, hashlib.sha256(data).hexdigest()

    def replace_if(self, path: str, data: bytes, version: str) -> bool:
        """Atomically replace ``path`` with ``data`` only if it is still at ``version``.

        ``True`` when replaced, ``False`` when another process replaced it
        since ``version`` was read. An object store does this with a
        conditional put (``If-Match``). The default checks and then
        replaces, which is not atomic between processes: implementations
        override it (the format stays correct without it, since readers
        also look for commit records newer than ``manifest.json``).
        """
        try:
            if self.read_versioned(path)[1] != version:
                return False
        except FileNotFoundError:
            return False
        self.replace(path, data)
        return True

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

    can_map = True

    def map_file(self, path: str) -> memoryview | None:
        with self._open_file(path) as (fd, size):
            try:
                return memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ)) if size else None
            except OSError:  # out of mappings (vm.max_map_count) or address space: read instead
                return None

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

    def read_versioned(self, path: str) -> tuple[bytes, str]:
        with self._open_file(path) as (fd, size):
            return _pread_all(fd, size, 0), _version(os.fstat(fd))

    def replace_if(self, path: str, data: bytes, version: str) -> bool:
        full = self.resolve(path)
        tmp = _durable_temp(full, data)
        try:
            # Every replace_if of this file holds the lock, so check and
            # rename are one step for them; the rename itself keeps plain
            # readers safe (a new inode, so a new version).
            with _locked(os.path.join(os.path.dirname(full), f".{os.path.basename(full)}.lock")):
                try:
                    current = _version(os.stat(full))
                except FileNotFoundError:
                    return False
                if current != version:
                    return False
                os.replace(tmp, full)
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

    def arrow_source(self, path: str) -> Any:
        return self.input_uri(path)  # a regular, readable file

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


def _version(stat: os.stat_result) -> str:
    # Each replace renames a new file into place: a new inode, a new version.
    return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"


@contextlib.contextmanager
def _locked(lock_path: str) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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


# -- locations ------------------------------------------------------------------

OBJECT_SCHEMES = ("s3", "gs", "az")
"""URL schemes of object stores; a plain path or ``file://`` is a local directory."""

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")


def filesystem_for(
    location: str | os.PathLike[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    durable: bool = False,
) -> FileSystem:
    """The file system of the store at ``location``: a path, ``file://``, ``s3://``, ``gs://`` or ``az://``.

    Any other scheme is a ``ConfigError`` (never a local folder named after a
    URL); ``storage_options`` only apply to object stores.
    """
    text = os.fspath(location)
    match = _URL.match(text)
    scheme = match.group(1).lower() if match else None
    if scheme in OBJECT_SCHEMES:
        return ObjectFileSystem(text, storage_options=storage_options)
    if scheme not in (None, "file"):
        raise ConfigError(
            f"{text!r}: predstore does not know the scheme {scheme}://; a store lives in a local "
            "directory (a path or file://) or on an object store (s3://, gs://, az://)"
        )
    if storage_options:
        raise ConfigError(
            f"storage_options were given for the local store {text!r}; they configure object "
            "stores (s3://, gs://, az://) only: drop them, or give the store's URL"
        )
    if scheme == "file":
        assert match is not None
        host, _, rest = match.group(2).partition("/")
        if host not in ("", "localhost"):
            raise ConfigError(f"{text!r}: a file:// URL names a local path (file:///abs/path)")
        text = "/" + rest
    return LocalFileSystem(text, durable=durable)


# -- object stores -----------------------------------------------------------------

_CLIENT_OPTIONS = {
    "allow_http",
    "allow_invalid_certificates",
    "connect_timeout",
    "timeout",
    "proxy_url",
    "user_agent",
}
_RETRY_OPTIONS = {"max_retries", "retry_timeout"}
_ENDPOINT_KEYS = ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint")
_DEFAULT_CLIENT = {"connect_timeout": "5s", "timeout": "60s"}
_DEFAULT_RETRY = {"max_retries": 5, "retry_timeout": 60.0}
_UPLOAD_BUFFER = 8 << 20
"""Bytes an upload buffers before it turns into a multipart upload of parts this size."""
_COMMIT_ATTEMPTS = 2
_RUNTIME_PID: int | None = None
"""The process whose clients started obstore's I/O runtime (threads that a fork does not copy)."""
_NONCE = "predstore-nonce"


class ObjectFileSystem(FileSystem):
    """A store under a prefix of an object store bucket: ``s3://bucket/prefix`` (or gs://, az://).

    Credentials and the endpoint come from the standard environment variables
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ...) and from ``storage_options``,
    which win: object_store's configuration keys (``aws_access_key_id``,
    ``aws_endpoint_url``, ...), its client options (``allow_http``,
    ``timeout``, ``connect_timeout``) and ``max_retries`` / ``retry_timeout``
    (seconds) for the bounded retries of transient failures. An ``http://``
    endpoint is allowed without more ado (local servers). The options are
    never printed: ``repr`` and every error name the URL only.

    Each process makes its own client (a pickled copy makes a new one on
    first use), so DataLoader workers and DDP ranks never share one; a process
    forked from one that had used obstore reads through botocore instead
    (:class:`_ForkedS3Reader`).
    """

    is_local = False

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.root = url.rstrip("/")
        self._options = {str(k).lower(): v for k, v in (storage_options or {}).items()}
        self._client: tuple[int, Any] | None = None
        self._forked_reader: _ForkedS3Reader | None = None
        self._conditional_put_checked = False
        if not self.root.partition("://")[2].split("/")[0]:
            raise ConfigError(f"{url!r} names no bucket; an object store URL is s3://bucket/prefix")
        if not _forked():
            self._store()  # a bad option fails here, before anything is written

    def __repr__(self) -> str:
        return f"ObjectFileSystem({self.root!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.root, self._options = state["root"], state["options"]
        self._client, self._conditional_put_checked = None, False
        self._forked_reader = None

    # -- the client ------------------------------------------------------------

    def _store(self) -> Any:
        if self._client is None or self._client[0] != os.getpid():
            self._client = (os.getpid(), self._make(self.root))
        return self._client[1]

    def _make(self, url: str) -> Any:
        from obstore.exceptions import BaseError
        from obstore.store import from_url

        global _RUNTIME_PID
        if _forked():
            raise StorageError(
                f"{self.root}: this process was forked from one that had used an object store, "
                "and obstore's I/O runtime does not survive a fork, so a forked process only "
                "reads (what DataLoader workers do); write from the parent, or start the "
                "processes with multiprocessing_context='forkserver' (or 'spawn')"
            )
        _RUNTIME_PID = os.getpid()

        config: Any = {
            k: v
            for k, v in self._options.items()
            if k not in _CLIENT_OPTIONS and k not in _RETRY_OPTIONS
        }
        client: Any = {**_DEFAULT_CLIENT}
        client.update({k: v for k, v in self._options.items() if k in _CLIENT_OPTIONS})
        if str(self._endpoint() or "").startswith("http://"):
            client.setdefault("allow_http", True)
        retry = {
            **_DEFAULT_RETRY,
            **{k: self._options[k] for k in _RETRY_OPTIONS & self._options.keys()},
        }
        try:
            retry_config: Any = {
                "max_retries": int(retry["max_retries"]),
                "retry_timeout": _dt.timedelta(seconds=float(retry["retry_timeout"])),
                "backoff": {
                    "init_backoff": _dt.timedelta(milliseconds=100),
                    "max_backoff": _dt.timedelta(seconds=5),
                    "base": 2,
                },
            }
            return from_url(url, config=config, client_options=client, retry_config=retry_config)
        except (BaseError, ValueError, TypeError) as e:
            raise ConfigError(
                f"storage_options for {self.root}: {_first_line(e)}; give object_store's "
                "configuration keys (aws_access_key_id, aws_endpoint_url, aws_region, ...) "
                "and max_retries / retry_timeout as numbers"
            ) from None

    def _endpoint(self) -> str | None:
        for key in _ENDPOINT_KEYS:
            if self._options.get(key):
                return str(self._options[key])
        return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT")

    def _fallback(self) -> _ForkedS3Reader | None:
        """The reader of a forked process (obstore's runtime is its parent's), else ``None``."""
        if not _forked():
            return None
        if self._forked_reader is None or self._forked_reader.pid != os.getpid():
            self._forked_reader = _ForkedS3Reader(self.root, self._options, self._endpoint())
        return self._forked_reader

    def _child(self, path: str) -> Any:
        """A client rooted at the prefix ``path`` of this store (what zarr's ObjectStore needs)."""
        return self._make(self.uri(path))

    def _request(self, what: str, path: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call`` with obstore's errors turned into ``FileNotFoundError`` or one ``StorageError``."""
        from obstore.exceptions import BaseError

        try:
            return call(*args, **kwargs)
        except FileNotFoundError as e:
            if "NoSuchBucket" not in str(e):
                raise FileNotFoundError(f"{self.uri(path)} does not exist") from None
            raise _storage_error(what, self.uri(path), e) from None
        except (BaseError, OSError) as e:  # a failed upload raises a plain OSError
            raise _storage_error(what, self.uri(path), e) from None

    # -- the contract --------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        import obstore

        if forked := self._fallback():
            return forked.read_bytes(check_relpath(path))
        result = self._request("read", path, obstore.get, self._store(), check_relpath(path))
        return bytes(self._request("read", path, result.bytes))

    def read_metadata(self, path: str, limit: int) -> bytes:
        # One ranged GET, not a HEAD then a GET: opening a store stays one request.
        data = self.read_range(path, 0, limit + 1)
        if len(data) > limit:
            raise CorruptStoreError(
                f"{self.uri(path)} is larger than the {limit} bytes predstore reads as "
                "metadata; the file is damaged or not predstore's"
            )
        return data

    def read_range(self, path: str, start: int, length: int) -> bytes:
        import obstore

        if length <= 0:
            return b""
        if forked := self._fallback():
            return forked.read_range(check_relpath(path), start, length)
        data = self._request(
            "read",
            path,
            obstore.get_range,
            self._store(),
            check_relpath(path),
            start=start,
            length=length,
        )
        return bytes(data)

    def read_ranges(self, path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
        # Adjacent ranges become one request; the others go in parallel. Not obstore's
        # get_ranges: it merges ranges up to 1 MiB apart, fetching bytes nobody asked for.
        spans: list[tuple[int, int, list[int]]] = []  # start, end, the ranges it holds
        for i in sorted(range(len(starts)), key=lambda i: starts[i]):
            start, end = starts[i], starts[i] + lengths[i]
            if spans and start <= spans[-1][1]:
                first, last, members = spans[-1]
                spans[-1] = (first, max(last, end), [*members, i])
            else:
                spans.append((start, end, [i]))
        blocks = _request_pool().map(
            lambda span: self.read_range(path, span[0], span[1] - span[0]), spans
        )
        out: list[bytes] = [b""] * len(starts)
        for (first, _, members), block in zip(spans, blocks, strict=True):
            for i in members:
                out[i] = block[starts[i] - first : starts[i] - first + lengths[i]]
        return out

    def replace(self, path: str, data: bytes) -> None:
        import obstore

        # A single PUT replaces an object atomically: readers see the old or the new bytes.
        self._request(
            "write",
            path,
            obstore.put,
            self._store(),
            check_relpath(path),
            data,
            use_multipart=False,
        )

    def read_versioned(self, path: str) -> tuple[bytes, str]:
        import obstore

        if forked := self._fallback():
            return forked.read_versioned(check_relpath(path))
        result = self._request("read", path, obstore.get, self._store(), check_relpath(path))
        data = bytes(self._request("read", path, result.bytes))
        return data, str(result.meta["e_tag"])

    def replace_if(self, path: str, data: bytes, version: str) -> bool:
        import obstore
        from obstore.exceptions import PreconditionError

        def put_if_match() -> bool:
            # If-Match on the ETag read: an object another committer replaced since is left alone.
            try:
                obstore.put(
                    self._store(),
                    path,
                    data,
                    mode={"e_tag": version},
                    use_multipart=False,
                )
            except (PreconditionError, FileNotFoundError):
                return False
            return True

        return bool(self._request("write", check_relpath(path), put_if_match))

    def put_if_absent(self, path: str, data: bytes) -> bool:
        check_relpath(path)
        self._check_conditional_put(path)
        return self._create(path, data)

    def _create(self, path: str, data: bytes) -> bool:
        """A conditional put (``If-None-Match: *``); ``True`` when this call created ``path``.

        Every attempt carries the same nonce (as object metadata): a put that
        landed but whose answer was lost comes back as 412 when retried (by
        obstore or here), and the stored nonce then says it was ours.
        """
        import obstore
        from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError

        nonce = uuid.uuid4().hex
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                obstore.put(
                    self._store(),
                    path,
                    data,
                    mode="create",
                    use_multipart=False,
                    attributes={_NONCE: nonce},
                )
                return True
            except (AlreadyExistsError, PreconditionError):
                try:
                    found = self._request("read", path, obstore.get, self._store(), path)
                except FileNotFoundError:
                    continue  # deleted since: try again
                return bool(found.attributes.get(_NONCE) == nonce)
            except BaseError as e:
                if attempt + 1 == _COMMIT_ATTEMPTS:
                    raise StorageError(
                        f"conditional put of {self.uri(path)} failed {_COMMIT_ATTEMPTS} times: "
                        f"{_first_line(e)}"
                    ) from None
                time.sleep(0.2 * 2**attempt)
        raise StorageError(f"conditional put of {self.uri(path)} never settled")

    def _check_conditional_put(self, path: str) -> None:
        """Refuse a service that ignores ``If-None-Match`` (once per client, before its first commit).

        Two conditional puts of one probe object: the second must be refused.
        A service that overwrites instead would let two committers both win.
        """
        import obstore

        if self._conditional_put_checked:
            return
        head = path.rpartition("/")[0]
        probe = f"{head + '/' if head else ''}.conditional-put{TEMP_MARKER}{uuid.uuid4().hex[:12]}"
        try:
            honoured = self._create(probe, b"1") and not self._create(probe, b"2")
        finally:
            with contextlib.suppress(Exception):
                obstore.delete(self._store(), probe)
        if not honoured:
            raise StorageError(
                f"{self.root}: the object store ignores conditional puts (If-None-Match), so two "
                "committers could both win and lose each other's data; predstore refuses to "
                "commit there. Use a service that honours conditional writes (AWS S3, MinIO, "
                "GCS, Azure, R2, ...)"
            )
        self._conditional_put_checked = True

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        import obstore

        check_relpath(path)
        writer = self._request(
            "write", path, obstore.open_writer, self._store(), path, buffer_size=_UPLOAD_BUFFER
        )
        try:
            yield _Upload(writer, lambda e: _storage_error("write", self.uri(path), e))  # type: ignore[misc]
        except BaseException as e:
            # Leaving with an error aborts the upload (its multipart parts are deleted):
            # nothing appears at ``path``.
            with contextlib.suppress(Exception):
                writer.__exit__(type(e), e, e.__traceback__)
            raise
        self._request("write", path, writer.close)

    def size(self, path: str) -> int:
        import obstore

        if forked := self._fallback():
            return forked.size(check_relpath(path))
        return int(
            self._request("read", path, obstore.head, self._store(), check_relpath(path))["size"]
        )

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
        except FileNotFoundError:
            return bool(self.list(path))
        return True

    def list(self, path: str) -> list[str]:
        import obstore

        prefix = check_relpath(path) + "/" if path else ""
        found = self._request(
            "list", path, obstore.list_with_delimiter, self._store(), prefix or None
        )
        names = [o["path"][len(prefix) :] for o in found["objects"]]
        names += [p[len(prefix) :].rstrip("/") for p in found["common_prefixes"]]
        return sorted(n for n in names if n)

    def delete_tree(self, path: str) -> None:
        import obstore

        prefix = check_relpath(path)
        store = self._store()
        doomed = [
            o["path"]
            for batch in self._request("list", path, obstore.list, store, prefix + "/")
            for o in batch
        ]
        if not doomed:
            doomed = [prefix]  # a single object (a missing one is no error)
        for i in range(0, len(doomed), 1000):
            with contextlib.suppress(FileNotFoundError):
                self._request("delete", path, obstore.delete, store, doomed[i : i + 1000])

    def uri(self, path: str) -> str:
        return f"{self.root}/{check_relpath(path)}" if path else self.root

    def arrow_source(self, path: str) -> Any:
        # pyarrow reads the footer from the end, then only the column chunks it needs.
        return _RangedFile(self, check_relpath(path))

    def polars_options(self) -> dict[str, str] | None:
        options = {k: str(v) for k, v in self._options.items() if k not in _RETRY_OPTIONS}
        if str(self._endpoint() or "").startswith("http://"):
            options.setdefault("allow_http", "true")
        return options

    def zarr_store(self, path: str, *, read_only: bool) -> Any:
        store = _zarr_object_store()(self._child(check_relpath(path)), read_only=read_only)
        store.location = self.uri(path)
        return store


class _Upload(io.RawIOBase):
    """An upload as the binary file pyarrow and the shard writer write to (it knows its position)."""

    def __init__(self, writer: Any, failed: Any) -> None:
        super().__init__()
        self._writer, self._failed = writer, failed
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        try:
            self._writer.write(data)
        except Exception as e:  # a part of a multipart upload failed for good
            raise self._failed(e) from None
        self._position += size
        return size

    def tell(self) -> int:
        return self._position


class _RangedFile(io.RawIOBase):
    """An object as pyarrow reads a file: its size (a HEAD), then a ranged GET per read.

    A Parquet footer costs two requests whatever the size of the part, and a
    column only its own chunks. The largest block read is kept: a small part
    comes whole with the footer's read and is not fetched again.
    """

    def __init__(self, fs: FileSystem, path: str) -> None:
        super().__init__()
        self._fs, self._path = fs, path
        self._position, self._size = 0, -1
        self._held: tuple[int, bytes] = (0, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def size(self) -> int:
        if self._size < 0:
            self._size = self._fs.size(self._path)
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size()}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = self.size() if size is None or size < 0 else min(start + size, self.size())
        first, held = self._held
        if first <= start and end <= first + len(held):
            data = held[start - first : end - first]
        else:
            data = self._fs.read_range(self._path, start, end - start)
            if len(data) > len(held):
                self._held = (start, data)
        self._position += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(memoryview(buffer).nbytes)
        memoryview(buffer)[: len(data)] = data
        return len(data)


def _storage_error(what: str, uri: str, error: BaseException) -> StorageError:
    if "NoSuchBucket" in str(error):
        return StorageError(f"{what} {uri} failed: the bucket does not exist; create it first")
    return StorageError(
        f"{what} {uri} failed: {_first_line(error)}. Check the endpoint, the bucket and the "
        "credentials (environment or storage_options)"
    )


def _forked() -> bool:
    """Whether this process was forked from one that had started obstore's I/O runtime."""
    return _RUNTIME_PID not in (None, os.getpid())


_pool: tuple[int, Any] | None = None


def _request_pool() -> Any:
    """This process's threads that wait for object-store requests in parallel.

    Per process: a forked child has none of its parent's threads.
    """
    global _pool
    from concurrent.futures import ThreadPoolExecutor

    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(16, thread_name_prefix="predstore-request"))
    return _pool[1]


class _ForkedS3Reader:
    """Reads of an ``s3://`` store in a process forked from one that had used obstore.

    obstore runs its requests on one tokio runtime per process, whose threads
    a fork does not copy: in the child every request would wait forever, and
    a new client cannot help since the runtime is a process-wide static. A
    DataLoader worker started by ``fork`` therefore reads through botocore
    (pure Python, nothing to lose in a fork), configured from the same URL,
    ``storage_options`` and environment. Only reads: a forked process that
    writes gets a ``StorageError``.
    """

    _KEYS: ClassVar[dict[str, tuple[str, ...]]] = {
        "aws_access_key_id": ("aws_access_key_id", "access_key_id"),
        "aws_secret_access_key": ("aws_secret_access_key", "secret_access_key"),
        "aws_session_token": ("aws_session_token", "aws_token", "session_token", "token"),
        "region_name": ("aws_region", "region", "aws_default_region"),
    }

    def __init__(self, root: str, options: Mapping[str, Any], endpoint: str | None) -> None:
        scheme, _, rest = root.partition("://")
        if scheme != "s3":
            raise StorageError(
                f"{root}: this process was forked from one that had used an object store, and "
                "obstore's I/O runtime does not survive a fork (only s3:// has a fallback); start "
                "DataLoader workers with multiprocessing_context='forkserver' (or 'spawn')"
            )
        import botocore.session
        from botocore.config import Config

        self.pid = os.getpid()
        self.root = root
        self.bucket, _, prefix = rest.partition("/")
        self.prefix = prefix + "/" if prefix else ""
        given = {
            name: next((str(options[k]) for k in keys if options.get(k)), None)
            for name, keys in self._KEYS.items()
        }
        given["region_name"] = (
            given["region_name"]
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        virtual = str(options.get("aws_virtual_hosted_style_request", "")).lower() == "true"
        retry = {**_DEFAULT_RETRY, **{k: options[k] for k in _RETRY_OPTIONS & options.keys()}}
        config = Config(
            connect_timeout=_seconds(
                options.get("connect_timeout", _DEFAULT_CLIENT["connect_timeout"])
            ),
            read_timeout=_seconds(options.get("timeout", _DEFAULT_CLIENT["timeout"])),
            retries={"max_attempts": int(retry["max_retries"]) + 1, "mode": "standard"},
            max_pool_connections=16,
            s3={"addressing_style": "virtual" if virtual or not endpoint else "path"},
        )
        self._client = botocore.session.get_session().create_client(
            "s3", endpoint_url=endpoint, config=config, **given
        )

    def _call(self, what: str, path: str, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(
                Bucket=self.bucket, Key=self.prefix + path, **kwargs
            )
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{self.root}/{path} does not exist") from None
            if code == "InvalidRange":
                return None
            raise _storage_error(what, f"{self.root}/{path}", e) from None
        except BotoCoreError as e:
            raise _storage_error(what, f"{self.root}/{path}", e) from None

    def read_bytes(self, path: str) -> bytes:
        return bytes(self._call("read", path, "get_object")["Body"].read())

    def read_range(self, path: str, start: int, length: int) -> bytes:
        found = self._call("read", path, "get_object", Range=f"bytes={start}-{start + length - 1}")
        return b"" if found is None else bytes(found["Body"].read())

    def read_versioned(self, path: str) -> tuple[bytes, str]:
        found = self._call("read", path, "get_object")
        return bytes(found["Body"].read()), str(found["ETag"])

    def size(self, path: str) -> int:
        return int(self._call("read", path, "head_object")["ContentLength"])


def _seconds(value: Any) -> float:
    """A duration as object_store's options give it (``"5s"``, ``"500ms"``, ``30``) in seconds."""
    text = str(value).strip().lower()
    for unit, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * scale
    return float(text)


@functools.cache
def _zarr_object_store() -> Any:
    """zarr's ``ObjectStore``, with obstore's errors turned into ``StorageError`` naming the URL."""
    from obstore.exceptions import BaseError
    from zarr.storage import ObjectStore

    class Store(ObjectStore):
        location = ""

        async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().get(key, *args, **kwargs)
            except BaseError as e:
                raise _storage_error("read", f"{self.location}/{key}", e) from None

        async def set(self, key: str, *args: Any, **kwargs: Any) -> None:
            try:
                await super().set(key, *args, **kwargs)
            except BaseError as e:
                raise _storage_error("write", f"{self.location}/{key}", e) from None

        async def delete(self, key: str) -> None:
            try:
                await super().delete(key)
            except BaseError as e:
                raise _storage_error("delete", f"{self.location}/{key}", e) from None

    return Store


def _first_line(error: BaseException) -> str:
    """The first line of an error (object_store adds a long debug dump), with the service's code."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    code = re.search(r"<Code>([^<]+)</Code>", text)
    line = re.sub(r":?\s*<\?xml.*$", "", line)
    if code and code.group(1) not in line:
        line += f" ({code.group(1)})"
    return line[:400]
