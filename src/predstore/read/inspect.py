"""Facts about a store for people: bytes and compression per key, file counts."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from predstore.format.parquet import read_footer
from predstore.format.schema import part_schema
from predstore.read.store import Store


@dataclass(frozen=True)
class KeyUsage:
    """Bytes on disk and uncompressed bytes of one key (or of one of the built-in columns)."""

    key: str
    storage: str
    dtype: str
    shape: str
    disk_bytes: int
    raw_bytes: int

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.disk_bytes if self.disk_bytes else float("nan")


def key_usage(store: Store) -> list[KeyUsage]:
    """Per key: its schema and what it costs on disk (Parquet columns from the parts' footers)."""
    disk, raw = _parquet_bytes(store)
    usage = []
    for name, spec in store.schema.keys.items():
        if spec.storage == "zarr":
            arrays = [a for a in store.manifest.arrays if a.key == name]
            disk_bytes = sum(sum(a.files.values()) for a in arrays)
            raw_bytes = sum(a.payload_bytes for a in arrays)
        else:
            disk_bytes, raw_bytes = disk.get(name, 0), raw.get(name, 0)
        shape = "x".join("?" if d is None else str(d) for d in spec.shape) or "scalar"
        usage.append(KeyUsage(name, spec.storage, spec.dtype, shape, disk_bytes, raw_bytes))
    return usage


def _parquet_bytes(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    """Compressed and uncompressed bytes of each top-level Parquet column, over all parts."""
    fields = part_schema(store.schema)
    owners = [f.name for f in fields for _ in range(_leaves(f.type))]
    disk: dict[str, int] = {}
    raw: dict[str, int] = {}
    for part in store.manifest.parts:
        meta = read_footer(store.fs, part)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                owner = owners[c] if c < len(owners) else "?"
                disk[owner] = disk.get(owner, 0) + column.total_compressed_size
                raw[owner] = raw.get(owner, 0) + column.total_uncompressed_size
    return disk, raw


def _leaves(dtype: pa.DataType) -> int:
    """How many Parquet leaf columns an Arrow type becomes."""
    if dtype.num_fields == 0:
        return 1
    return sum(_leaves(dtype.field(i).type) for i in range(dtype.num_fields))


def file_count(store: Store) -> int:
    """Data files the store uses: parts and array shards (manifests not counted)."""
    return len(store.manifest.parts) + sum(len(a.files) for a in store.manifest.arrays)


def disk_bytes(store: Store) -> int:
    """Bytes of every data file the store uses."""
    parts = sum(p.bytes for p in store.manifest.parts)
    return parts + sum(sum(a.files.values()) for a in store.manifest.arrays)


def human_bytes(n: int) -> str:
    """``n`` bytes for people: 512 B, 20.1 KB, 3.4 GB (powers of 1000)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"
