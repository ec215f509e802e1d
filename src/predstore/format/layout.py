"""Where each file of a store lives, relative to the store root.

::

    manifest.json                         the store manifest: the commit point
    _commits/0000000003.json              every committed manifest, created once (put-if-absent)
    writes/<write_id>/rank-00001.json     rank 1's manifest for that write
    writes/<write_id>/parts/r00001-000004.parquet
    writes/<write_id>/arrays/r00001/<key>/zarr.json, c/...

Everything a write creates lives under its own ``writes/<write_id>/``, and
within it every file belongs to one rank, so no two processes ever write the
same file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from urllib.parse import quote

from predstore.errors import CorruptStoreError

MANIFEST = "manifest.json"
COMMITS = "_commits"
WRITES = "writes"

_WRITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# Components that start with a letter, digit, '_', '%' or '-' and hold no '/', '\\' or NUL:
# never '', '.' or '..', never absolute. Most paths match; the rest get the full check.
_PLAIN_PATH = re.compile(
    r"^[A-Za-z0-9_%-][A-Za-z0-9_.%+=-]*(?:/[A-Za-z0-9_%-][A-Za-z0-9_.%+=-]*)*\Z"
)


def commit_record(generation: int) -> str:
    return f"{COMMITS}/{generation:010d}.json"


def write_dir(write_id: str) -> str:
    return f"{WRITES}/{check_write_id(write_id)}"


def rank_manifest(write_id: str, rank: int) -> str:
    return f"{write_dir(write_id)}/rank-{rank:05d}.json"


def part(write_id: str, rank: int, seq: int) -> str:
    return f"{write_dir(write_id)}/parts/r{rank:05d}-{seq:06d}.parquet"


def array(write_id: str, rank: int, key: str) -> str:
    return f"{write_dir(write_id)}/arrays/r{rank:05d}/{key_file_name(key)}"


MAX_NAME = 120
"""Bytes of the longest file name a key maps to (file systems allow 255)."""


def key_file_name(key: str) -> str:
    """A safe file name for a key: any key works, and no key is ever read as a path.

    Anything that is not a plain file-name character (and the names ``.``
    and ``..``) is percent-encoded. A key with capitals ends in ``~`` and a
    hash of the whole key, so that keys differing only in case (``Logits`` and
    ``logits``) never share a folder on a case-insensitive file system (macOS,
    Windows); a name longer than :data:`MAX_NAME` keeps its start and ends the
    same way. The manifest records each array's path, so readers never compute it.
    """
    name = quote(key, safe="", errors="surrogatepass")
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    # Percent escapes are always upper case (and '%' itself is escaped), so only the
    # key's own capitals can make two names equal when case is ignored.
    if len(name) > MAX_NAME or any("A" <= c <= "Z" for c in key):
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[: MAX_NAME - len(digest) - 1]}~{digest}"
    return name


def new_write_id() -> str:
    """A sortable, unique write id: UTC start time plus 48 random bits."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(6)


def check_write_id(write_id: str) -> str:
    if not isinstance(write_id, str) or not _WRITE_ID.match(write_id):
        raise ValueError(
            f"write_id {write_id!r} must be 1 to 128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return write_id


def check_relpath(path: str) -> str:
    """``path`` if it is a plain relative path inside the store, else ``CorruptStoreError``.

    A manifest is data from disk: it may be damaged or hostile. Absolute
    paths, ``..`` components, backslashes and empty components are refused so
    that nothing outside the store is ever read, written or deleted.
    """
    if isinstance(path, str) and _PLAIN_PATH.match(path):
        return path
    if (
        not isinstance(path, str)
        or not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or os.path.isabs(path)
        or any(part in ("", ".", "..") for part in path.split("/"))
    ):
        raise CorruptStoreError(
            f"path {path!r} is not a relative path inside the store; "
            "a manifest may only name files under the store directory"
        )
    return path
