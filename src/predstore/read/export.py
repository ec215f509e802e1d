"""Exporting a store to one file (Parquet, CSV, JSON, JSON lines or Arrow IPC), sorted by (dataloader_idx, index).

Parquet columns come from one sorted polars scan; Zarr keys are read in
batches of rows and added as list columns (``arrays="list"``): fixed-shape
keys as nested fixed-size lists, ragged keys as the flat list of their
values plus a ``<key>.shape`` column. In CSV, every list value becomes a
JSON array in its cell; JSON and JSON lines hold lists as arrays. The format
comes from the file's extension unless ``format`` is given. The output is
written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from predstore.errors import ConfigError
from predstore.format import dtypes
from predstore.format.schema import KeySchema, nest
from predstore.read.store import Store

ExportFormat = Literal["parquet", "csv", "json", "jsonl", "ipc"]
ArrayMode = Literal["list", "skip"]
FORMATS: tuple[str, ...] = ("parquet", "csv", "json", "jsonl", "ipc")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
}


def format_of(out: str | os.PathLike[str], format: str | None = None) -> ExportFormat:
    """The export format: ``format`` when given, else the one ``out``'s extension names."""
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        return format  # type: ignore[return-value]
    extension = os.path.splitext(os.fspath(out))[1].lower()
    if extension not in EXTENSIONS:
        raise ConfigError(
            f"cannot tell the format of {os.fspath(out)!r} from its extension "
            f"{extension or '(none)'}; name it {', '.join(EXTENSIONS)} or pass format= (--format)"
        )
    return EXTENSIONS[extension]  # type: ignore[return-value]


def export(
    store: Store,
    out: str | os.PathLike[str],
    *,
    format: ExportFormat | None = None,
    arrays: ArrayMode = "list",
    batch_rows: int = 16384,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write every visible row of ``store`` to ``out``; return the number of rows written.

    ``progress``, when given, is called after each batch with (rows written, rows to write).
    """
    chosen = format_of(out, format)
    if arrays not in ("list", "skip"):
        raise ConfigError(f"arrays must be 'list' or 'skip', got {arrays!r}")
    target = os.fspath(out)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"cannot write {target}: the folder {folder} does not exist; create it first"
        )
    temp = f"{target}.tmp-{os.getpid()}"
    sink: _Sink | None = None
    done = 0
    if progress is not None:
        progress(0, len(store))
    try:
        for batch in _batches(store, arrays, batch_rows):
            if sink is None:
                sink = _Sink(chosen, temp, batch.schema)
            sink.write(batch)
            done += batch.num_rows
            if progress is not None:
                progress(done, len(store))
        if sink is None:  # an empty store still exports its header
            sink = _Sink(chosen, temp, table(store, np.arange(0), arrays=arrays).schema)
        sink.close()
        sink = None
        os.replace(temp, target)
    except BaseException:
        if sink is not None:
            sink.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return len(store)


def table(store: Store, positions: Any, *, arrays: ArrayMode = "list") -> pa.Table:
    """The rows at ``positions`` (of the store's order) as one table, Zarr keys as list columns."""
    return _table(store, store.scan(sort=True).collect(), np.asarray(positions, np.int64), arrays)


def _batches(store: Store, arrays: ArrayMode, batch_rows: int) -> Iterator[pa.Table]:
    """Sorted rows in batches, each with its Zarr keys read for exactly those rows."""
    frame = store.scan(sort=True).collect()  # sorted: the row index's order
    for start in range(0, frame.height, batch_rows):
        positions = np.arange(start, min(start + batch_rows, frame.height))
        yield _table(store, frame, positions, arrays)


def _table(store: Store, frame: pl.DataFrame, positions: Any, arrays: ArrayMode) -> pa.Table:
    result = frame[positions].to_arrow() if len(positions) else frame.head(0).to_arrow()
    if arrays == "skip":
        return result
    for key, spec in store.schema.keys.items():
        if spec.storage == "zarr":
            values = store._gather_at(key, spec, positions)
            for name, column in _array_columns(key, spec, values).items():
                result = result.append_column(name, column)
    keys = [c for k in store.schema.keys for c in (k, f"{k}.shape") if c in result.column_names]
    return result.select([c for c in result.column_names if c not in keys] + keys)


class _Sink:
    """One output file of one format, written a batch at a time."""

    def __init__(self, format: ExportFormat, path: str, schema: pa.Schema) -> None:
        self.format, self.first = format, True
        if format == "parquet":
            self.writer: Any = pq.ParquetWriter(path, schema, compression="zstd")
        elif format == "ipc":
            self.writer = ipc.new_file(path, schema)
        elif format == "csv":
            self.writer = pacsv.CSVWriter(path, _as_csv_cells(schema.empty_table()).schema)
        else:
            self.writer = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            if format == "json":
                self.writer.write("[")

    def write(self, batch: pa.Table) -> None:
        if self.format in ("parquet", "ipc"):
            self.writer.write_table(batch)
        elif self.format == "csv":
            self.writer.write_table(_as_csv_cells(batch))
        else:
            self._write_json(batch)

    def _write_json(self, batch: pa.Table) -> None:
        frame = pl.from_arrow(_json_ready(batch))
        lines = frame.write_ndjson().splitlines()  # type: ignore[union-attr]
        if self.format == "jsonl":
            self.writer.writelines(line + "\n" for line in lines)
            return
        for line in lines:
            self.writer.write(("\n" if self.first else ",\n") + line)
            self.first = False

    def close(self) -> None:
        if self.format == "json" and not self.writer.closed:
            self.writer.write("\n]\n")
        self.writer.close()


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


def _json_ready(table: pa.Table) -> pa.Table:
    """float16 as float32, which JSON writers know."""
    columns = [
        column.cast(pa.float32()) if pa.types.is_float16(column.type) else column
        for column in table.columns
    ]
    return pa.table(columns, names=table.column_names)


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
