"""The two manifests of the format, as typed records, and their JSON encoding.

A *rank manifest* lists what one rank of one write has committed: its parts
and the committed extent of each of its arrays. The *store manifest* is
the state of the store at one generation: every part and array a reader may
use, the schema, coverage and provenance. A *commit record*
(``_commits/<generation>.json``) holds what one commit changed; the store
manifest ``manifest.json`` is a checkpoint of the newest record (see
:mod:`predstore.format.history`). Both are JSON (``schemas/`` holds their JSON
Schemas); decoding checks every type, and every path is checked to stay
inside the store, so a damaged or hostile manifest is refused with a
``CorruptStoreError`` naming the file and the offending field.
"""

from __future__ import annotations

import datetime as _dt
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import numpy as np

from predstore.errors import CorruptStoreError, FormatVersionError
from predstore.format.layout import check_relpath, check_write_id
from predstore.format.schema import Schema

FORMAT_NAME = "predstore"
FORMAT_VERSION = 2
"""2: commit records hold what a commit changed (1: each held the whole manifest)."""

MAX_MANIFEST_BYTES = 256 << 20
"""A manifest larger than this is refused unread: it is damaged, not a store's."""

Mode = Literal["error", "overwrite", "append", "resume"]
RankState = Literal["open", "closed", "failed"]
Count = Annotated[int, msgspec.Meta(ge=0)]
Length = Annotated[int, msgspec.Meta(ge=1)]
Crc32c = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]


# Entries of parts and arrays are not tracked by the garbage collector (gc=False): a store
# manifest holds one per part, tens of thousands in a long job, and they hold only strings,
# numbers and lists or dicts of them, so they can never be part of a reference cycle.
# Tracking them made each collection during a decode walk them all, tripling its time.


class PartEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One committed Parquet part of one rank."""

    path: str
    write_id: str
    rank: Count
    seq: Count
    rows: Count
    bytes: Count
    dataloaders: list[int]
    index_min: int
    index_max: int
    array_offsets: dict[str, Count] = {}
    """For each fixed-shape Zarr key: position of this part's first row in the rank's array."""
    crc32c: Crc32c | None = None
    """The CRC-32C of the whole file (absent in stores written before checksums)."""
    index_step: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """When set, row r of the part holds index ``index_min + r * index_step`` (one dataloader):
    readers and commits then know the part's keys without reading it."""


def check_stepped(part: PartEntry) -> None:
    """Refuse a part entry that gives its indices by ``index_step`` inconsistently.

    Such an entry must name one dataloader and an ``index_max`` that is the
    last of ``rows`` steps from ``index_min``; anything else is a damaged
    manifest (``CorruptStoreError``), never rows read under wrong keys.
    """
    last = part.index_min + max(part.rows - 1, 0) * (part.index_step or 1)
    wrong = []
    if len(part.dataloaders) != 1:
        wrong.append(f"{len(part.dataloaders)} dataloaders (expected 1)")
    if part.index_max != last:
        wrong.append(f"index_max {part.index_max} (expected {last})")
    if wrong:
        raise CorruptStoreError(
            f"the manifest entry of part {part.path} gives its rows' indices by a step, but "
            f"with {' and '.join(wrong)}; the store is damaged (predstore verify lists every "
            "problem)"
        )


def stepped_indices(part: PartEntry) -> np.ndarray[Any, Any]:
    """The indices of a part whose entry gives them by ``index_step``, the entry checked first."""
    check_stepped(part)
    return np.arange(part.rows, dtype=np.int64) * (part.index_step or 1) + part.index_min


class ArrayEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """The committed extent of one Zarr array (one key of one rank of one write)."""

    key: str
    write_id: str
    rank: Count
    path: str
    dtype: str
    zarr_dtype: str
    length: Count
    """Committed extent along the first axis: rows, or elements for a ragged (flat) array."""
    shape: list[Count]
    chunks: list[Length]
    shards: list[Length]
    codecs: list[Any]
    payload_bytes: Count
    files: dict[str, Count]
    """Every file of the array that the committed extent needs, with its size."""
    checksums: dict[str, Crc32c] = {}
    """Per shard file of ``files``, the CRC-32C of its index and its chunks' own CRC-32Cs in
    chunk order (:meth:`predstore.format.shards.ShardLayout.digest`); empty in stores
    written before checksums."""


class RankManifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What one rank of one write has committed so far."""

    format: Literal["predstore"] = "predstore"
    format_version: int = FORMAT_VERSION
    write_id: str
    rank: Count
    world_size: Annotated[int, msgspec.Meta(ge=1)]
    mode: Mode
    base_generation: Count
    resumes: list[str] = []
    state: RankState
    started_at: str
    updated_at: str
    schema: Schema | None = None
    parts: list[PartEntry] = []
    arrays: list[ArrayEntry] = []
    expected: dict[int, Count] = {}
    index_source: str | None = None
    provenance: dict[str, Any] = {}

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


class WriteEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One write that contributed to the store."""

    write_id: str
    mode: Mode
    world_size: int
    ranks: dict[int, RankState]
    started_at: str
    ended_at: str
    rows: Count
    index_source: str | None = None
    provenance: dict[str, Any] = {}


class RetiredWrite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A write that an overwrite replaced: its files stay for readers until the retention ends."""

    write_id: str
    retired_at: str


class Coverage(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How well one dataloader's indices are covered."""

    expected: Count | None
    written: Count
    unique: Count
    duplicates: Count
    missing: Count | None
    duplicate_sample: list[int] = []
    missing_sample: list[int] = []


class _Generation(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What the store manifest and a commit record both start with: which store, which commit."""

    format: Literal["predstore"] = "predstore"
    format_version: int = FORMAT_VERSION
    store_id: str
    generation: Annotated[int, msgspec.Meta(ge=1)]
    created_at: str
    committed_at: str


class StoreManifest(_Generation, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A store at one generation: everything a reader needs, and nothing it must list."""

    rows: Count
    schema: Schema
    writes: list[WriteEntry]
    parts: list[PartEntry]
    arrays: list[ArrayEntry]
    coverage: dict[int, Coverage]
    provenance: dict[str, Any] = {}
    retired: list[RetiredWrite] = []
    """Replaced writes whose files are kept for readers that opened an earlier generation."""
    replaced_generation: Count = 0
    """The last generation that replaced the store's rows (a new store, an overwrite).
    An unfinished append that started from it or later can still commit."""

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.coverage.values())


class CommitRecord(_Generation, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What one commit changed: ``_commits/<generation>.json``, created once (put-if-absent).

    Applied to the store manifest of ``generation - 1`` it gives the store
    manifest of ``generation``. A record that ``replaces`` holds the whole
    store (a new store, an overwrite, an upgrade, a history checkpoint);
    otherwise its writes, parts and arrays are added to the previous ones.
    Schema, rows, coverage and provenance are small and always whole.
    """

    replaces: bool
    checkpoint: bool = False
    """A whole copy of the previous generation (an upgrade, a start for a pruned history)."""
    rows: Count
    schema: Schema
    writes: list[WriteEntry] = []
    parts: list[PartEntry] = []
    arrays: list[ArrayEntry] = []
    coverage: dict[int, Coverage]
    provenance: dict[str, Any] = {}
    retired: list[RetiredWrite] = []
    """Writes retired by this commit."""
    forgotten: list[str] = []
    """Retired writes whose files this commit's committer deletes (their retention ended)."""
    replaced_generation: Count = 0
    """As in the store manifest it gives."""


class _Header(msgspec.Struct):
    format: str = FORMAT_NAME
    format_version: int = 0


_M = TypeVar("_M", StoreManifest, RankManifest, CommitRecord)


def now() -> str:
    """The current UTC time as an ISO 8601 string, as every manifest records time."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def encode(manifest: StoreManifest | RankManifest | CommitRecord) -> bytes:
    return msgspec.json.format(msgspec.json.encode(manifest), indent=1)


def decode(data: bytes, kind: type[_M], *, source: str) -> _M:
    """Decode and check a manifest read from ``source`` (a file name used in errors).

    The JSON is parsed once, into ``kind``; only when that fails is its
    header read alone, so that a manifest of another format or a newer
    version is named as such rather than as damaged.
    """
    try:
        manifest = msgspec.json.decode(data, type=kind)
    except RecursionError:
        raise CorruptStoreError(f"{source} is damaged: JSON nested too deeply") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        _check_header(_header(data, source), source)
        raise CorruptStoreError(f"{source} is damaged: {e}") from None
    _check_header(manifest, source)
    _check_paths(manifest, source)
    return manifest


def _header(data: bytes, source: str) -> _Header:
    try:
        return msgspec.json.decode(data, type=_Header)
    except RecursionError:
        raise CorruptStoreError(f"{source} is damaged: JSON nested too deeply") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise CorruptStoreError(
            f"{source} is not a readable manifest ({e}); it may be truncated"
        ) from None


def _check_header(
    header: _Header | StoreManifest | RankManifest | CommitRecord, source: str
) -> None:
    if header.format != FORMAT_NAME:
        raise CorruptStoreError(f"{source} is not a predstore manifest (format {header.format!r})")
    if header.format_version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{source} was written in predstore format version {header.format_version}; "
            f"this predstore reads versions up to {FORMAT_VERSION}: upgrade predstore to read it"
        )
    if header.format_version < 1:
        raise CorruptStoreError(f"{source}: format_version must be a positive integer")


def format_version_of(data: bytes) -> int:
    """The format version a manifest declares (0 when it declares none)."""
    try:
        return msgspec.json.decode(data, type=_Header).format_version
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return 0


def _check_paths(manifest: StoreManifest | RankManifest | CommitRecord, source: str) -> None:
    try:
        check_write_id(manifest.write_id) if isinstance(manifest, RankManifest) else None
        for write_id in {part.write_id for part in manifest.parts}:
            check_write_id(write_id)
        for part in manifest.parts:
            check_relpath(part.path)
        for write in getattr(manifest, "writes", []):
            check_write_id(write.write_id)
        for retired in getattr(manifest, "retired", []):
            check_write_id(retired.write_id)
        for write_id in getattr(manifest, "forgotten", []):
            check_write_id(write_id)
        for array in manifest.arrays:
            check_relpath(array.path)
            for path in array.files:
                check_relpath(path)
            _check_chunking(array)
    except (CorruptStoreError, ValueError) as e:
        raise CorruptStoreError(f"{source} is damaged: {e}") from None


def _check_chunking(array: ArrayEntry) -> None:
    """Chunks and shards of an array span its sample shape; a shard holds whole chunks."""
    if (
        len(array.chunks) != len(array.shape)
        or len(array.shards) != len(array.shape)
        or array.chunks[1:] != array.shape[1:]
        or array.shards[1:] != array.shape[1:]
        or array.shards[0] % array.chunks[0]
    ):
        raise ValueError(
            f"array {array.path}: chunks {array.chunks} and shards {array.shards} "
            f"do not fit its shape {array.shape}"
        )
