"""Reading a committed Parquet part: the one place a part's rows are loaded."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from predstore.errors import CorruptStoreError
from predstore.format.fs import FileSystem
from predstore.format.manifest import PartEntry


def read_part(fs: FileSystem, part: PartEntry, columns: Sequence[str]) -> pa.Table:
    """``columns`` of ``part``; a part that cannot be read, or whose row count differs from its
    manifest entry, raises :class:`~predstore.errors.CorruptStoreError` naming the file."""
    try:
        table = pq.read_table(fs.uri(part.path), columns=list(columns))
    except (OSError, ValueError, pa.ArrowException) as e:
        raise CorruptStoreError(f"part {part.path} cannot be read: {e}") from None
    if table.num_rows != part.rows:
        raise CorruptStoreError(
            f"part {part.path} holds {table.num_rows} rows, its manifest says {part.rows}"
        )
    return table
