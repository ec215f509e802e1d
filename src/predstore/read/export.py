"""Exporting a store to one Parquet or CSV file, sorted by (dataloader_idx, index).

Parquet columns come from one sorted polars scan; Zarr keys are read in
batches of rows and added as list columns (``arrays="list"``): fixed-shape
keys as nested fixed-size lists, ragged keys as the flat list of their
values plus a ``<key>.shape`` column. In CSV, every list value becomes a
JSON array in its cell. The output is written under a temporary name and
renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from predstore.format import dtypes
from predstore.format.schema import DATALOADER, KeySchema, nest
from predstore.read.store import Store

ExportFormat = Literal["parquet", "csv"]
ArrayMode = Literal["list", "skip"]


def export(
    store: Store,
    out: str | os.PathLike[str],
    *,
    format: ExportFormat = "parquet",
    arrays: ArrayMode = "list",
    batch_rows: int = 16384,
) -> int:
    """Write every visible row of ``store`` to ``out``; return the number of rows written."""
    if format not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', got {format!r}")
    if arrays not in ("list", "skip"):
        raise ValueError(f"arrays must be 'list' or 'skip', got {arrays!r}")
    frame = store.scan(sort=True).collect()
    zarr_keys = (
        [] if arrays == "skip" else [k for k, s in store.schema.keys.items() if s.storage == "zarr"]
    )
    target = os.fspath(out)
    temp = f"{target}.tmp-{os.getpid()}"
    writer: Any = None
    try:
        for batch in _batches(store, frame, zarr_keys, batch_rows):
            table = _as_csv_cells(batch) if format == "csv" else batch
            if writer is None:
                writer = (
                    pq.ParquetWriter(temp, table.schema, compression="zstd")
                    if format == "parquet"
                    else pacsv.CSVWriter(temp, table.schema)
                )
            writer.write_table(table)
        if writer is None:  # an empty store still exports its header
            empty = frame.to_arrow()
            writer = (
                pq.ParquetWriter(temp, empty.schema)
                if format == "parquet"
                else pacsv.CSVWriter(temp, _as_csv_cells(empty).schema)
            )
        writer.close()
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return frame.height


def _batches(store: Store, frame: Any, zarr_keys: list[str], batch_rows: int) -> Any:
    """Sorted rows in batches, each with its Zarr keys read for exactly those rows."""
    for dl in frame.get_column(DATALOADER).unique().sort().to_list():
        rows = frame.filter(frame.get_column(DATALOADER) == dl)
        indices = store.indices(dl)
        for start in range(0, rows.height, batch_rows):
            table = rows.slice(start, batch_rows).to_arrow()
            chunk = indices[start : start + batch_rows]
            for key in zarr_keys:
                spec = store.schema.keys[key]
                values = store.read(key, chunk, dataloader_idx=dl)
                for name, column in _array_columns(key, spec, values).items():
                    table = table.append_column(name, column)
            yield table


def _array_columns(key: str, spec: KeySchema, values: Any) -> dict[str, pa.Array]:
    dtype = dtypes.get(spec.dtype)
    if not spec.ragged:
        flat = dtype.to_parquet(np.ascontiguousarray(values)).reshape(-1)
        return {key: nest(pa.array(flat), spec.shape)}
    lengths = np.array([v.size for v in values], dtype=np.int64)
    offsets = pa.array(np.concatenate(([0], np.cumsum(lengths))), pa.int64())
    flat = (
        np.concatenate([dtype.to_parquet(np.ravel(v)) for v in values])
        if values
        else np.zeros(0, dtype.parquet)
    )
    shapes = np.array([v.shape for v in values], dtype=np.int64).reshape(
        len(values), len(spec.shape)
    )
    return {
        key: pa.LargeListArray.from_arrays(offsets, pa.array(flat)),
        f"{key}.shape": nest(pa.array(shapes.reshape(-1)), (len(spec.shape),)),
    }


def _as_csv_cells(table: pa.Table) -> pa.Table:
    """Nested columns as JSON text, which is what a CSV cell can hold."""
    columns = []
    for column in table.columns:
        if pa.types.is_nested(column.type):
            text = [None if v is None else json.dumps(v) for v in column.to_pylist()]
            column = pa.chunked_array([pa.array(text, pa.string())])
        elif pa.types.is_float16(column.type):
            column = column.cast(pa.float32())
        columns.append(column)
    return pa.table(columns, names=table.column_names)
