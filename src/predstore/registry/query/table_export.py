"""Writing a registry table to CSV or Parquet."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from predstore.errors import QueryError
from predstore.registry._atomic import atomic_write, commit_temp, discard, temp_path_for

FORMATS = (".csv", ".parquet")


def write_table(frame: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` to ``path``, choosing the format by suffix; replace atomically.

    Parquet keeps every type (lists, datetimes with their zone). CSV cannot hold
    lists: list columns (``tags``) are written as JSON arrays, and datetimes as
    ISO 8601 text.

    Raises:
        QueryError: if the suffix is neither ``.csv`` nor ``.parquet``, or
            the directory ``path`` names does not exist.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise QueryError(
            f"cannot export to {out.name!r}: expected a file name ending in .csv or .parquet"
        )
    if not out.parent.is_dir():
        raise QueryError(f"cannot export to {out}: the directory {out.parent} does not exist")
    if suffix == ".parquet":
        tmp = temp_path_for(out)
        try:
            frame.write_parquet(tmp)
            commit_temp(tmp, out)
        finally:
            discard(tmp)
        return out
    atomic_write(out, _csv_ready(frame).write_csv().encode())
    return out


def _csv_ready(frame: pl.DataFrame) -> pl.DataFrame:
    lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
    return frame.with_columns(
        pl.Series(name, [None if v is None else json.dumps(v) for v in frame[name].to_list()])
        for name in lists
    )
