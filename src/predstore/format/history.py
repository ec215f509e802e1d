"""The commit history: numbered commit records are the truth, ``manifest.json`` a checkpoint.

A commit of generation ``g`` creates ``_commits/<g>.json`` with put-if-absent:
that decides it, and a second committer of ``g`` loses (an object store does
this with a conditional put). The record holds what the commit changed (the
parts and arrays it adds), so history costs O(change) per commit; a record
that ``replaces`` holds the whole store (a new store, an overwrite, an
upgrade, a history checkpoint written by vacuum).

``manifest.json`` is a checkpoint: the whole store manifest of the newest
record, replaced only by a newer generation (a conditional replace on the
version read), so it never moves back. Opening a store reads it and then
looks for the next record (normally absent: three requests with the size
check, no listing); a reader
that finds newer records, left by a committer that has not published yet or
died before it, applies them. A damaged checkpoint is rebuilt from the
records (this lists ``_commits/``, which only recovery does).
"""

from __future__ import annotations

import contextlib
import logging
import re

import msgspec

from predstore.errors import CommitConflictError, CorruptStoreError
from predstore.format import layout
from predstore.format.fs import FileSystem
from predstore.format.manifest import (
    MAX_MANIFEST_BYTES,
    CommitRecord,
    StoreManifest,
    decode,
    encode,
    format_version_of,
)

_RECORD = re.compile(r"^(\d{10})\.json$")
_log = logging.getLogger("predstore")


def load(fs: FileSystem, *, strict: bool = True) -> tuple[StoreManifest | None, int]:
    """The newest committed store manifest (``None`` if none) and the checkpoint's generation.

    With ``strict=False`` (readers), a damaged next record is skipped with a
    warning: the store reads as of the last good generation. Writers pass
    ``strict=True`` and get a ``CorruptStoreError`` that says how to repair it.
    """
    try:
        data = fs.read_metadata(layout.MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        state = roll_forward(fs, None, strict=strict)
        if state is None and generations(fs):  # records, but no checkpoint: it was lost
            state = roll_forward(fs, rebuild(fs, damaged=_lost(fs)), strict=strict)
        return state, 0
    else:
        try:
            checkpoint = decode(data, StoreManifest, source=fs.uri(layout.MANIFEST))
        except CorruptStoreError as e:
            checkpoint = rebuild(fs, damaged=e)
            return roll_forward(fs, checkpoint, strict=strict), 0
    generation = checkpoint.generation if checkpoint else 0
    return roll_forward(fs, checkpoint, strict=strict), generation


def roll_forward(
    fs: FileSystem, state: StoreManifest | None, *, strict: bool = True
) -> StoreManifest | None:
    """``state`` with every newer record applied."""
    while True:
        generation = state.generation + 1 if state else 1
        try:
            record = read_record(fs, generation)
        except FileNotFoundError:
            return state
        except CorruptStoreError as e:
            if strict:
                raise
            _log.warning("%s; reading generation %s", e, generation - 1)
            return state
        state = apply(state, record)


def read_record(fs: FileSystem, generation: int) -> CommitRecord | StoreManifest:
    """The record of ``generation`` (format 1 recorded whole manifests); ``FileNotFoundError`` if absent."""
    path = layout.commit_record(generation)
    data = fs.read_metadata(path, MAX_MANIFEST_BYTES)
    try:
        if format_version_of(data) == 1:
            record: CommitRecord | StoreManifest = decode(data, StoreManifest, source=fs.uri(path))
        else:
            record = decode(data, CommitRecord, source=fs.uri(path))
    except CorruptStoreError as e:
        e.add_note(
            f"predstore: commit record {path} is damaged, so no write can commit after it; "
            "`predstore finalize` sets it aside (its commit is lost) and publishes the last good "
            "generation"
        )
        raise
    if record.generation != generation:
        raise CorruptStoreError(f"{fs.uri(path)} holds generation {record.generation}")
    return record


def apply(base: StoreManifest | None, record: CommitRecord | StoreManifest) -> StoreManifest:
    """The store manifest after ``record``."""
    if isinstance(record, StoreManifest):
        return record
    if base is None and not record.replaces:
        raise CorruptStoreError(
            f"commit record {record.generation} adds to a store that has no earlier generation"
        )
    kept = [] if base is None else [r for r in base.retired if r.write_id not in record.forgotten]
    old = None if record.replaces else base
    return StoreManifest(
        store_id=record.store_id,
        generation=record.generation,
        created_at=record.created_at,
        committed_at=record.committed_at,
        rows=record.rows,
        schema=record.schema,
        writes=[*(old.writes if old else []), *record.writes],
        parts=[*(old.parts if old else []), *record.parts],
        arrays=[*(old.arrays if old else []), *record.arrays],
        coverage=record.coverage,
        provenance=record.provenance,
        retired=[*kept, *record.retired],
        replaced_generation=record.replaced_generation,
    )


def record_of(
    base: StoreManifest | None,
    manifest: StoreManifest,
    *,
    replaces: bool,
    forgotten: list[str],
    checkpoint: bool = False,
) -> CommitRecord:
    """The record that turns ``base`` into ``manifest`` (which extends it unless ``replaces``)."""
    old = None if replaces or base is None else base
    kept = {r.write_id for r in base.retired} - set(forgotten) if base else set()
    return CommitRecord(
        store_id=manifest.store_id,
        generation=manifest.generation,
        created_at=manifest.created_at,
        committed_at=manifest.committed_at,
        replaces=old is None,
        checkpoint=checkpoint,
        rows=manifest.rows,
        schema=manifest.schema,
        writes=manifest.writes[len(old.writes) :] if old else manifest.writes,
        parts=manifest.parts[len(old.parts) :] if old else manifest.parts,
        arrays=manifest.arrays[len(old.arrays) :] if old else manifest.arrays,
        coverage=manifest.coverage,
        provenance=manifest.provenance,
        retired=[r for r in manifest.retired if r.write_id not in kept],
        forgotten=forgotten,
        replaced_generation=manifest.replaced_generation,
    )


def commit(
    fs: FileSystem,
    base: StoreManifest | None,
    manifest: StoreManifest,
    *,
    replaces: bool,
    forgotten: list[str] | None = None,
    checkpoint: bool = False,
) -> None:
    """Decide ``manifest`` (its record, put-if-absent), then publish it as the checkpoint.

    ``checkpoint`` marks a record that holds the whole store without changing
    its rows (an upgrade, a start for a pruned history).
    """
    record = record_of(
        base, manifest, replaces=replaces, forgotten=forgotten or [], checkpoint=checkpoint
    )
    try:
        decided = fs.put_if_absent(layout.commit_record(manifest.generation), encode(record))
    except OSError as e:
        e.add_note(
            f"predstore: committing generation {manifest.generation} of {fs.root} failed; "
            "the store is as it was"
        )
        raise
    if not decided:
        raise CommitConflictError(
            f"{fs.root}: another process committed generation {manifest.generation} "
            "while this commit was being prepared; run `predstore finalize` again"
        )
    publish(fs, manifest)


def publish(fs: FileSystem, manifest: StoreManifest) -> None:
    """Make ``manifest`` the checkpoint unless a checkpoint of its generation or newer is there."""
    data = encode(manifest)
    while True:
        try:
            current, version = fs.read_versioned(layout.MANIFEST)
        except FileNotFoundError:
            if fs.put_if_absent(layout.MANIFEST, data):
                return
            continue
        if _generation_of(current) >= manifest.generation:
            return  # a newer commit published already: never move back
        if fs.replace_if(layout.MANIFEST, data, version):
            return


def _generation_of(data: bytes) -> int:
    """The generation a checkpoint holds; 0 when it is damaged (so that it is replaced)."""
    try:
        return int(msgspec.json.decode(data, type=_Generation).generation)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return 0


class _Generation(msgspec.Struct):
    generation: int = 0


def generations(fs: FileSystem) -> list[int]:
    """The generations that have a record, oldest first (this lists: recovery and vacuum only)."""
    return sorted(int(m.group(1)) for n in fs.list(layout.COMMITS) if (m := _RECORD.match(n)))


def rebuild(fs: FileSystem, *, damaged: CorruptStoreError) -> StoreManifest:
    """The newest store manifest rebuilt from ``_commits/``, when ``manifest.json`` is damaged."""
    found = generations(fs)
    for start in reversed(found):
        with contextlib.suppress(CorruptStoreError):
            record = read_record(fs, start)
            if isinstance(record, StoreManifest) or record.replaces:
                _log.warning(
                    "%s: %s; rebuilt generation %s from the commit records",
                    fs.root,
                    damaged,
                    start,
                )
                return apply(None, record)
    damaged.add_note(
        "predstore: no commit record could rebuild it either; restore manifest.json from a backup"
    )
    raise damaged


def _lost(fs: FileSystem) -> CorruptStoreError:
    return CorruptStoreError(f"{fs.uri(layout.MANIFEST)} is missing")


def set_aside(fs: FileSystem, generation: int) -> None:
    """Move a damaged record out of the history, keeping a copy for inspection."""
    path = layout.commit_record(generation)
    data = fs.read_bytes(path)
    fs.replace(f"{layout.COMMITS}/damaged/{generation:010d}.json", data)
    fs.delete_tree(path)
