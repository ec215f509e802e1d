"""Reading Parquet parts: only regular files inside the store, every failure named.

pyarrow reads a part at the location :meth:`FileSystem.input_uri` gives
after checking it (inside the store, a regular file, readable), with the
pages' CRC-32 checked. Whatever goes wrong comes back as a predstore error
that names the part and says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq

from predstore.errors import CorruptStoreError, PredstoreError, StorePermissionError
from predstore.format.fs import FileSystem
from predstore.format.manifest import PartEntry
from predstore.format.schema import ROW_KEYS


def check_size(fs: FileSystem, part: PartEntry) -> None:
    """Refuse a part that is missing or whose size differs from its manifest entry."""
    try:
        size = fs.size(part.path)
    except FileNotFoundError:
        raise CorruptStoreError(
            f"part {part.path} of the manifest is missing: its {part.rows} rows are lost "
            "(restore the file from a backup; `predstore verify` lists every problem)"
        ) from None
    if size != part.bytes:
        raise CorruptStoreError(
            f"part {part.path} has {size} bytes, the manifest says {part.bytes}; "
            "the store is damaged (predstore verify lists every problem)"
        )


def read_part(
    fs: FileSystem, part: PartEntry, columns: Sequence[str], expected: pa.Schema = ROW_KEYS
) -> pa.Table:
    """``columns`` of ``part``, its pages' checksums verified, its rows counted and its types
    those of ``expected`` (by default the row keys' only: pass the store's part schema).

    The types are checked because the footer, which gives them, has no checksum a read checks:
    a damaged one must be a ``CorruptStoreError``, not a type error deep in a reader.
    """
    # ParquetFile, not read_table: read_table goes through pyarrow.dataset, whose import alone
    # costs a fresh process about as much as reading a part's small columns.
    with (
        _named(part),
        pq.ParquetFile(fs.arrow_source(part.path), page_checksum_verification=True) as file,
    ):
        table = file.read(columns=list(columns))
    _check_rows(part, table.num_rows)
    for field in table.schema:
        at = expected.get_field_index(field.name)
        if at >= 0 and not field.type.equals(expected.field(at).type):
            raise CorruptStoreError(
                f"part {part.path} holds column {field.name!r} as {field.type}, the store's "
                f"schema says {expected.field(at).type}; its footer is damaged (predstore "
                "verify lists every problem)"
            )
    return table


def read_footer(fs: FileSystem, part: PartEntry) -> pq.FileMetaData:
    """The Parquet footer of ``part`` (its schema, row groups and row count)."""
    with _named(part):
        meta = pq.read_metadata(fs.arrow_source(part.path))
    _check_rows(part, meta.num_rows)
    return meta


def _check_rows(part: PartEntry, rows: int) -> None:
    if rows != part.rows:
        raise CorruptStoreError(
            f"part {part.path} holds {rows} rows, its manifest says {part.rows}; the store is "
            "damaged (predstore verify lists every problem)"
        )


@contextmanager
def _named(part: PartEntry) -> Iterator[None]:
    try:
        yield
    except PredstoreError:
        raise
    except PermissionError:
        raise StorePermissionError(
            f"part {part.path}: permission denied; make the store's files readable by this "
            "user (chmod, chown) or read the store as their owner"
        ) from None
    except (OSError, ValueError, pa.ArrowException) as e:
        raise CorruptStoreError(
            f"part {part.path} is not readable Parquet ({e}); the file is damaged "
            "(predstore verify --deep lists every damaged file)"
        ) from None
