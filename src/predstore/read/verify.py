"""Checking that a store's files are what its manifest says they are.

:func:`verify` checks, for the committed generation: every file the manifest
names exists with its recorded size; every part is a readable Parquet file
with its recorded rows and the store's column types; every array opens with
its recorded dtype and covers its committed extent, and every shard that a
committed row needs is listed; the coverage figures match the rows. With
``deep=True`` it also reads every byte: each file against the CRC-32C its
manifest records, each Parquet page against its CRC-32, and every inner
chunk decoded and checked against its own crc32c (zstd frames also against
zstd's checksum). It then looks for unfinished
writes (rank data that no store manifest includes yet) and says how many
rows ``finalize`` or ``mode="resume"`` would recover.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from predstore.errors import PredstoreError
from predstore.format import history, layout
from predstore.format.commit import can_commit, load_store_manifest, pending_writes
from predstore.format.coverage import coverage, row_keys
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem, file_crc32c, filesystem_for
from predstore.format.manifest import (
    MAX_MANIFEST_BYTES,
    ArrayEntry,
    Coverage,
    PartEntry,
    StoreManifest,
    decode,
)
from predstore.format.parquet import read_footer, read_part
from predstore.format.schema import offset_column, part_schema, shape_column
from predstore.read.arrays import ArrayReader
from predstore.read.store import Store, open


@dataclass(frozen=True)
class UnfinishedWrite:
    """Rank data of a write that no store manifest includes yet."""

    write_id: str
    mode: str
    ranks: dict[int, str]
    rows: int
    recoverable: bool
    """Whether ``finalize`` would commit it (it started from the current generation)."""


@dataclass
class VerifyReport:
    path: str
    generation: int | None = None
    rows: int = 0
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    unfinished: list[UnfinishedWrite] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the committed store is sound and no recoverable write is waiting."""
        return not self.problems and not any(w.recoverable for w in self.unfinished)


def verify(
    path: str | os.PathLike[str],
    *,
    deep: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check the store at ``path``; problems are collected, never raised."""
    report = VerifyReport(os.fspath(path))
    fs = filesystem_for(path, storage_options=storage_options)
    store = None
    try:
        store = open(path, storage_options=storage_options)
    except PredstoreError as e:
        report.problems.append(str(e))
    if store is not None:
        report.generation, report.rows = store.manifest.generation, len(store)
        for check in (_check_parts, _check_arrays, _check_coverage):
            try:
                check(store, report, deep)
            except PredstoreError as e:
                report.problems.append(str(e))
    _check_history(fs, report)
    try:
        base = store.manifest if store is not None else load_store_manifest(fs)
    except PredstoreError:
        base = None
    try:
        for write_id, ranks in pending_writes(fs, base).items():
            rows = sum(r.rows for r in ranks)
            if not rows:
                continue  # a write without committed rows blocks nothing and loses nothing
            report.unfinished.append(
                UnfinishedWrite(
                    write_id=write_id,
                    mode=ranks[0].mode,
                    ranks={r.rank: r.state for r in ranks},
                    rows=rows,
                    recoverable=can_commit(ranks, base),
                )
            )
    except PredstoreError as e:
        report.problems.append(f"unfinished write data is unreadable: {e}")
    return report


def _check_history(fs: FileSystem, report: VerifyReport) -> None:
    """The checkpoint and the next commit record must be readable (readers work around both)."""
    try:
        data = fs.read_metadata(layout.MANIFEST, MAX_MANIFEST_BYTES)
        decode(data, StoreManifest, source=fs.uri(layout.MANIFEST))
    except FileNotFoundError:
        pass
    except PredstoreError as e:
        report.problems.append(
            f"{e}; readers rebuild it from {layout.COMMITS}/, `predstore finalize` rewrites it"
        )
    try:
        history.load(fs)
    except PredstoreError as e:
        report.problems.append(" ".join([str(e), *getattr(e, "__notes__", [])]))


def _check_file(store: Store, report: VerifyReport, path: str, size: int) -> bool:
    report.files_checked += 1
    try:
        actual = store.fs.size(path)
    except FileNotFoundError:
        report.problems.append(f"{path} is missing")
        return False
    except PredstoreError as e:
        report.problems.append(str(e))
        return False
    if actual != size:
        report.problems.append(f"{path} has {actual} bytes, the manifest says {size}")
        return False
    return True


def _check_parts(store: Store, report: VerifyReport, deep: bool) -> None:
    expected = part_schema(store.schema)
    for part in store.manifest.parts:
        if not _check_file(store, report, part.path, part.bytes):
            continue
        try:
            footer = read_footer(store.fs, part)
            if (
                not footer.schema.to_arrow_schema()
                .remove_metadata()
                .equals(expected.remove_metadata())
            ):
                report.problems.append(f"{part.path} does not have the store's column types")
            if deep:
                _check_checksum(store, report, part.path, part.bytes, part.crc32c)
                read_part(store.fs, part, expected.names)  # every page against its CRC
        except PredstoreError as e:
            report.problems.append(str(e))


def _check_checksum(
    store: Store, report: VerifyReport, path: str, size: int, expected: int | None
) -> bool:
    """Whether ``path`` has the CRC-32C its manifest records (stores before checksums: yes)."""
    if expected is None:
        return True
    actual = file_crc32c(store.fs, path, size)
    if actual != expected:
        report.problems.append(
            f"{path}: its bytes do not match the checksum the manifest records "
            f"(CRC-32C {actual:08x}, expected {expected:08x}); the file is damaged"
        )
    return actual == expected


def _check_arrays(store: Store, report: VerifyReport, deep: bool) -> None:
    parts_of: dict[tuple[str, int], list[PartEntry]] = {}
    for part in store.manifest.parts:
        parts_of.setdefault((part.write_id, part.rank), []).append(part)
    for entry in store.manifest.arrays:
        sizes_ok = all([_check_file(store, report, p, n) for p, n in entry.files.items()])  # noqa: C419 (check every file)
        reader = ArrayReader(store.fs, entry)
        try:
            reader.layout  # noqa: B018  (reading zarr.json checks it against the manifest)
        except PredstoreError as e:
            report.problems.append(str(e))
            continue
        spans = _spans(store, entry, parts_of.get((entry.write_id, entry.rank), []))
        listed = set(entry.files)
        for start, stop in spans:
            if stop > entry.length:
                report.problems.append(
                    f"{entry.path}: committed rows reach {stop}, past its extent {entry.length}"
                )
            for shard in _shards(reader, start, min(stop, entry.length)):
                if reader.shard_path(shard) not in listed:
                    report.problems.append(
                        f"{entry.path}: shard {reader.shard_path(shard)} holds committed rows "
                        "but is not listed"
                    )
        if deep and sizes_ok:
            _decode_all(store, report, reader)


def _decode_all(store: Store, report: VerifyReport, reader: ArrayReader) -> None:
    """Decode every chunk of every shard (each against its own checksum), and check each
    shard's chunks against the checksum its manifest records (which sees them moved)."""
    entry, layout = reader.entry, reader.layout
    per_shard = layout.chunks_per_shard
    for shard in range(-(-entry.length // entry.shards[0])):
        path = reader.shard_path(shard)
        if path not in entry.files:
            continue  # reported as not listed
        try:
            ids = list(range(shard * per_shard, (shard + 1) * per_shard))
            raws = reader._raw_chunks(ids)
            for chunk, raw in zip(ids, raws, strict=True):
                if raw is not None:
                    layout.decode(raw, reader.where(chunk))
            expected = entry.checksums.get(path)
            index = reader._index(shard, path, entry.files[path])
            crcs = [None if raw is None else bytes(raw[-4:]) for raw in raws]
            if expected is not None and layout.digest(index, crcs) != expected:
                report.problems.append(
                    f"{path}: its chunks do not match the checksum the manifest records "
                    "(chunks were moved or replaced); the file is damaged"
                )
        except PredstoreError as e:
            report.problems.append(str(e))


def _spans(store: Store, entry: ArrayEntry, parts: Iterable[PartEntry]) -> list[tuple[int, int]]:
    """The ranges of the array that committed rows use."""
    spec = store.schema.keys[entry.key]
    spans = []
    for part in parts:
        if not spec.ragged:
            start = part.array_offsets.get(entry.key, 0)
            spans.append((start, start + part.rows))
            continue
        table = read_part(store.fs, part, [offset_column(entry.key), shape_column(entry.key)])
        starts = table.column(0).to_numpy()
        shapes = table.column(1).combine_chunks().flatten().to_numpy().reshape(part.rows, -1)
        sizes = shapes.prod(axis=1)
        spans.extend((int(s), int(s + n)) for s, n in zip(starts, sizes, strict=True) if n)
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
        else:
            merged.append((start, stop))
    return merged


def _shards(reader: ArrayReader, start: int, stop: int) -> range:
    """The numbers of the shards that hold positions ``[start, stop)`` of the array."""
    length = reader.entry.shards[0]
    return range(start // length, -(-stop // length))


def _figures(cover: Mapping[int, Coverage]) -> dict[int, tuple[int | None, ...]]:
    """The counts of a coverage, without its samples."""
    return {d: (c.expected, c.written, c.unique, c.duplicates, c.missing) for d, c in cover.items()}


def _true_samples(cover: Mapping[int, Coverage], dl: NDArray, index: NDArray) -> bool:
    """Whether every sampled duplicate occurs twice and every sampled missing index never.

    Commits extend coverage from what changed, so their samples are true
    examples, not always the smallest ones: compare them as examples.
    """
    for d, c in cover.items():
        keys, counts = np.unique(index[dl == d], return_counts=True)
        doubled = set(keys[counts > 1].tolist())
        if not set(c.duplicate_sample) <= doubled or set(c.missing_sample) & set(keys.tolist()):
            return False
    return True


def _check_coverage(store: Store, report: VerifyReport, deep: bool) -> None:
    manifest = store.manifest
    dl, index = row_keys(store.fs, manifest.parts)
    expected = {d: c.expected for d, c in manifest.coverage.items() if c.expected is not None}
    actual = coverage(dl, index, expected)
    if _figures(actual) != _figures(manifest.coverage) or not _true_samples(
        manifest.coverage, dl, index
    ):
        report.problems.append(
            f"coverage does not match the rows: the manifest says {_brief(manifest.coverage)}, "
            f"the parts hold {_brief(actual)}"
        )
    unique = sum(c.unique for c in actual.values())
    if unique != manifest.rows:
        report.problems.append(
            f"the manifest says {manifest.rows} rows, the parts hold {unique} distinct keys"
        )
    if len(np.unique(dl)) and not set(np.unique(dl).tolist()) <= set(manifest.coverage):
        report.problems.append("the parts hold dataloaders the coverage does not list")


def _brief(cover: Mapping[int, Coverage]) -> str:
    return ", ".join(
        f"dataloader {d}: {c.unique} unique, {c.duplicates} duplicates"
        for d, c in sorted(cover.items())
    )
