"""Streaming the rows of one rank into Parquet parts.

A part is open while it fills: its row groups go to a temporary file as
they reach ``row_group_bytes``, so memory holds at most one row group. On
commit the file is closed and renamed into place, and becomes immutable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from predstore.format import dtypes, layout
from predstore.format.fs import ChecksumSink, FileSystem
from predstore.format.manifest import PartEntry
from predstore.format.schema import (
    DATALOADER,
    INDEX,
    NAME,
    KeySchema,
    Schema,
    nest,
    part_schema,
    value_type,
)
from predstore.write.batch import Batch, Column

ParquetCodec = tuple[str, int | None]
"""A Parquet compression and its level (``None``: the codec's default, or it has none)."""
DEFAULT_CODEC: ParquetCodec = ("zstd", 1)


class PartWriter:
    """The Parquet parts of one rank of one write, one open part at a time."""

    def __init__(
        self,
        fs: FileSystem,
        *,
        write_id: str,
        rank: int,
        schema: Schema,
        row_group_bytes: int,
        codecs: Mapping[str, ParquetCodec] | None = None,
    ) -> None:
        self.fs, self.write_id, self.rank = fs, write_id, rank
        self.schema = schema
        self.arrow_schema = part_schema(schema)
        self.row_group_bytes = row_group_bytes
        self.compression, self.compression_level = _compression(self.arrow_schema, codecs or {})
        self.seq = 0
        self.rows = 0  # rows in the open part
        self.bytes_written = 0  # encoded bytes of the open part's finished row groups
        self._pending: list[pa.RecordBatch] = []
        self._pending_bytes = 0
        self._stack: contextlib.ExitStack | None = None
        self._writer: pq.ParquetWriter | None = None
        self._index_range = (np.iinfo(np.int64).max, -1)
        self._dataloaders: set[int] = set()
        self.sinks: dict[str, ChecksumSink] = {}
        """The open files by path, each keeping the CRC-32C of what was written."""
        self._steps = _Progression()

    def columns(self, batch: Batch) -> dict[str, pa.Array]:
        """The part columns of ``batch`` (all but the hidden ones); nothing is added yet."""
        arrays = {
            # A copy: pa.array would share the caller's int64 array, which it may refill.
            INDEX: pa.array(batch.indices.copy(), pa.int64()),
            DATALOADER: pa.array(np.full(len(batch), batch.dataloader_idx, np.int64)),
            NAME: pa.array(batch.names or [None] * len(batch), pa.string()),
        }
        for key, spec in self.schema.keys.items():
            if spec.storage == "parquet":
                arrays[key] = to_arrow(spec, batch.columns[key])
        return arrays

    def append(self, batch: Batch, columns: dict[str, pa.Array]) -> None:
        """Add ``batch``, as :meth:`columns` gave it plus the hidden ragged columns, to the open part."""
        record = pa.RecordBatch.from_pydict(columns, schema=self.arrow_schema)
        self._pending.append(record)
        self._pending_bytes += record.nbytes
        self.rows += len(batch)
        lo, hi = self._index_range
        self._index_range = (min(lo, int(batch.indices.min())), max(hi, int(batch.indices.max())))
        self._dataloaders.add(batch.dataloader_idx)
        self._steps.extend(batch.indices)
        if self._pending_bytes >= self.row_group_bytes:
            self._flush_row_group()

    def _flush_row_group(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._stack, self._writer = self.open_file(self.path)
        table = pa.Table.from_batches(self._pending, self.arrow_schema)
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.bytes_written += self._pending_bytes
        self._pending, self._pending_bytes = [], 0

    def open_file(self, path: str) -> tuple[contextlib.ExitStack, pq.ParquetWriter]:
        """A Parquet writer on a temporary file that becomes ``path`` when the stack closes."""
        stack = contextlib.ExitStack()
        sink = ChecksumSink(stack.enter_context(self.fs.open_atomic(path)))
        writer = stack.enter_context(
            pq.ParquetWriter(
                sink,
                self.arrow_schema,
                compression=self.compression,
                compression_level=self.compression_level,
                use_dictionary=[NAME, *self._string_keys()],
                write_statistics=[INDEX, DATALOADER],
                write_page_checksum=True,
            )
        )
        self.sinks[path] = sink
        return stack, writer

    def _string_keys(self) -> list[str]:
        return [k for k, s in self.schema.keys.items() if s.dtype == dtypes.STRING]

    @property
    def path(self) -> str:
        return layout.part(self.write_id, self.rank, self.seq)

    @property
    def open_bytes(self) -> int:
        """Bytes the open part holds so far, written or pending."""
        return self.bytes_written + self._pending_bytes

    def seal(self, array_offsets: dict[str, int]) -> SealedPart | None:
        """Hand over the open part, to be finished by :meth:`SealedPart.finish`; start the next one."""
        if not self.rows:
            return None
        sealed = SealedPart(
            self, self._stack, self._writer, self._pending, self.path, array_offsets
        )
        sealed.rows, sealed.seq = self.rows, self.seq
        sealed.index_range, sealed.dataloaders = self._index_range, sorted(self._dataloaders)
        sealed.index_step = self._steps.step if len(self._dataloaders) == 1 else None
        self._steps = _Progression()
        self.seq += 1
        self.rows, self.bytes_written = 0, 0
        self._stack, self._writer, self._pending, self._pending_bytes = None, None, [], 0
        self._index_range, self._dataloaders = (np.iinfo(np.int64).max, -1), set()
        return sealed

    def abort(self) -> None:
        """Drop the open part; its temporary file is removed."""
        _discard(self._stack)
        self.sinks.pop(self.path, None)
        self._stack, self._writer, self._pending = None, None, []


class SealedPart:
    """A part that takes no more rows: finishing it writes what is pending and renames it into place."""

    rows: int
    seq: int
    index_range: tuple[int, int]
    dataloaders: list[int]
    index_step: int | None

    def __init__(
        self,
        owner: PartWriter,
        stack: contextlib.ExitStack | None,
        writer: pq.ParquetWriter | None,
        pending: list[pa.RecordBatch],
        path: str,
        array_offsets: dict[str, int],
    ) -> None:
        self._owner, self._stack, self._writer, self._pending = owner, stack, writer, pending
        self.path, self.array_offsets = path, array_offsets

    def abort(self) -> None:
        """Drop the part: its temporary file is removed."""
        _discard(self._stack)
        self._owner.sinks.pop(self.path, None)

    def finish(self) -> PartEntry:
        owner = self._owner
        try:
            if self._pending:
                if self._writer is None:
                    self._stack, self._writer = owner.open_file(self.path)
                table = pa.Table.from_batches(self._pending, owner.arrow_schema)
                self._writer.write_table(table, row_group_size=max(1, table.num_rows))
            assert self._stack is not None
            self._stack.close()  # closes the Parquet writer, then renames the file into place
        except BaseException:
            _discard(self._stack)
            raise
        return PartEntry(
            path=self.path,
            write_id=owner.write_id,
            rank=owner.rank,
            seq=self.seq,
            rows=self.rows,
            bytes=owner.fs.size(self.path),
            crc32c=owner.sinks.pop(self.path).crc32c,
            dataloaders=self.dataloaders,
            index_min=self.index_range[0],
            index_max=self.index_range[1],
            array_offsets=self.array_offsets,
            index_step=self.index_step,
        )


class _Progression:
    """Whether a part's indices, in row order, rise by one constant step (``step``, else ``None``).

    Contiguous writes (step 1) and DistributedSampler shards (step =
    world size) do: their manifest entry then names every key of the part.
    """

    def __init__(self) -> None:
        self.step: int | None = 1
        self._last: int | None = None
        self._fixed = False

    def extend(self, indices: np.ndarray) -> None:
        if self.step is None or not len(indices):
            return
        run = indices if self._last is None else np.concatenate(([self._last], indices))
        self._last = int(indices[-1])
        if len(run) < 2:
            return
        gaps = np.diff(run)
        step = int(gaps[0])
        if step < 1 or (self._fixed and step != self.step) or bool((gaps != step).any()):
            self.step = None
            return
        self.step, self._fixed = step, True


def _discard(stack: contextlib.ExitStack | None) -> None:
    if stack is not None:
        with contextlib.suppress(Exception):
            stack.__exit__(RuntimeError, RuntimeError("part discarded"), None)


def _compression(
    schema: pa.Schema, codecs: Mapping[str, ParquetCodec]
) -> tuple[dict[str, str], dict[str, int]]:
    """Per Parquet leaf column, its compression and level: a key's codec, else the default."""
    names, levels = {}, {}
    for field in schema:
        name, level = codecs.get(field.name, DEFAULT_CODEC)
        for leaf in _leaves(field.name, field.type):
            names[leaf] = name
            if level is not None:
                levels[leaf] = level
    return names, levels


def _leaves(path: str, type_: pa.DataType) -> list[str]:
    """The Parquet paths of the leaf columns of a field (lists written as ``<name>.list.element``)."""
    if (
        pa.types.is_list(type_)
        or pa.types.is_fixed_size_list(type_)
        or pa.types.is_large_list(type_)
    ):
        return _leaves(f"{path}.list.element", type_.value_type)
    if pa.types.is_struct(type_):
        return [leaf for f in type_ for leaf in _leaves(f"{path}.{f.name}", f.type)]
    return [path]


def to_arrow(spec: KeySchema, column: Column) -> pa.Array:
    """One Parquet key's column as an Arrow array of its part type (values are copied)."""
    if spec.dtype == dtypes.STRING:
        return pa.array(column.values, pa.string())
    dtype = dtypes.get(spec.dtype)
    if not spec.ragged:
        flat = dtype.to_parquet(np.ascontiguousarray(column.values)).reshape(-1)
        mask = column.mask
        return nest(pa.array(flat.copy(), mask=mask if not spec.shape else None), spec.shape, mask)
    rows = column.values
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64))).astype(np.int32)
    flat = np.concatenate([dtype.to_parquet(np.ascontiguousarray(r)).reshape(-1) for r in rows])
    inner = nest(pa.array(flat), spec.shape[1:], None)
    return pa.ListArray.from_arrays(pa.array(offsets), inner, type=value_type(spec))
