"""The commit protocol: rank manifests in, one store manifest out.

A commit of generation ``g`` first creates ``_commits/<g>.json`` with
put-if-absent, which decides the commit (a second committer racing for the
same generation gets ``CommitConflictError``), then atomically replaces
``manifest.json`` with the same bytes, which publishes it. A committer that
dies between the two steps leaves a decided but unpublished commit; the next
committer rolls it forward before doing anything else. Readers only ever
read ``manifest.json``, so they see one complete generation or the one before.

:func:`finalize` stitches the rank manifests of unfinished writes into the
next generation. It is what a single-rank writer does on close, what rank 0
does after the barrier at the end of ``trainer.predict``, and what
``predstore finalize`` does to recover a store whose writers died.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import platform
import re
import uuid
from collections.abc import Iterable, Sequence

import msgspec

from predstore.errors import CommitConflictError, StoreNotCommittedError
from predstore.format import layout
from predstore.format.coverage import coverage, row_keys
from predstore.format.fs import TEMP_MARKER, FileSystem
from predstore.format.manifest import (
    MAX_MANIFEST_BYTES,
    RankManifest,
    RetiredWrite,
    StoreManifest,
    WriteEntry,
    decode,
    encode,
    now,
)
from predstore.format.schema import Schema

_RANK_FILE = re.compile(r"^rank-(\d{5})\.json$")
_LIBRARIES = ("predstore", "torch", "lightning", "numpy", "pyarrow", "zarr", "numcodecs", "polars")


def load_store_manifest(fs: FileSystem) -> StoreManifest | None:
    """The published store manifest, or ``None`` when the store was never committed."""
    try:
        data = fs.read_metadata(layout.MANIFEST, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        return None
    return decode(data, StoreManifest, source=fs.uri(layout.MANIFEST))


def load_rank_manifest(fs: FileSystem, write_id: str, rank: int) -> RankManifest:
    path = layout.rank_manifest(write_id, rank)
    return decode(fs.read_metadata(path, MAX_MANIFEST_BYTES), RankManifest, source=fs.uri(path))


def save_rank_manifest(fs: FileSystem, manifest: RankManifest) -> None:
    fs.replace(layout.rank_manifest(manifest.write_id, manifest.rank), encode(manifest))


def committed(fs: FileSystem) -> StoreManifest | None:
    """The latest committed manifest, first publishing any commit that was decided but not published."""
    current = load_store_manifest(fs)
    while True:
        record = layout.commit_record(current.generation + 1 if current else 1)
        try:
            data = fs.read_metadata(record, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            return current
        current = decode(data, StoreManifest, source=fs.uri(record))
        fs.replace(layout.MANIFEST, data)


def commit(fs: FileSystem, manifest: StoreManifest) -> None:
    """Decide, then publish, ``manifest`` as generation ``manifest.generation``."""
    data = encode(manifest)
    try:
        decided = fs.put_if_absent(layout.commit_record(manifest.generation), data)
    except OSError as e:
        e.add_note(
            f"predstore: committing generation {manifest.generation} of {fs.root} failed; the store is as it was"
        )
        raise
    if not decided:
        raise CommitConflictError(
            f"{fs.root}: another process committed generation {manifest.generation} "
            "while this commit was being prepared; run `predstore finalize` again"
        )
    fs.replace(layout.MANIFEST, data)


def pending_writes(fs: FileSystem, base: StoreManifest | None) -> dict[str, list[RankManifest]]:
    """Writes whose rank manifests exist but which ``base`` does not include.

    This lists directories, which only writers and recovery do; readers rely
    on the store manifest alone.
    """
    done = {w.write_id for w in base.writes} if base else set()
    found: dict[str, list[RankManifest]] = {}
    for write_id in fs.list(layout.WRITES):
        if write_id in done or TEMP_MARKER in write_id or write_id.startswith("."):
            continue
        ranks = [
            load_rank_manifest(fs, write_id, int(m.group(1)))
            for name in fs.list(layout.write_dir(write_id))
            if (m := _RANK_FILE.match(name))
        ]
        if ranks:
            found[write_id] = ranks
    return found


RETENTION = 600.0
"""Seconds the files of a replaced store stay readable for readers that opened it before."""


def finalize(
    fs: FileSystem, *, write_ids: Sequence[str] | None = None, retention: float = RETENTION
) -> StoreManifest:
    """Commit the next generation of the store from the rank manifests of unfinished writes.

    With ``write_ids``, exactly those writes are committed; they must have
    started from the current generation. Without, every unfinished write that
    started from the current generation is committed; writes that started
    from an older generation were superseded and are left alone. Returns the
    committed manifest (the current one if the writes were already committed).

    Writes that an overwrite replaced are retired, not deleted: a reader that
    opened the store before keeps reading them for ``retention`` seconds; the
    first commit after that (or :func:`vacuum`) deletes them.
    """
    base = committed(fs)
    generation = base.generation if base else 0
    pending = pending_writes(fs, base)
    if write_ids is not None:
        done = {w.write_id for w in base.writes} if base else set()
        if base is not None and all(w in done for w in write_ids):
            return base
        chosen = {w: pending[w] for w in write_ids if w in pending}
        unknown = [w for w in write_ids if w not in pending and w not in done]
        if unknown:
            raise StoreNotCommittedError(
                f"{fs.root}: write {unknown[0]} has no rank manifest; nothing of it was committed"
            )
    else:
        chosen = {w: r for w, r in pending.items() if _starts_from(r, generation)}
    for write_id, ranks in chosen.items():
        if not _starts_from(ranks, generation):
            raise CommitConflictError(
                f"{fs.root}: write {write_id} started from generation {ranks[0].base_generation} "
                f"but the store is now at generation {generation}; another write committed since"
            )
    if not chosen:
        if base is not None:
            return base
        raise StoreNotCommittedError(
            f"{fs.root} holds no committed store and no unfinished write to finalize"
        )
    manifest, expired = _without_expired(
        _next_manifest(fs, base, _in_start_order(chosen)), retention
    )
    commit(fs, manifest)
    _remove_writes(fs, expired)
    return manifest


def vacuum(fs: FileSystem, *, retention: float = RETENTION) -> list[str]:
    """Delete what no reader needs any more; return the write ids deleted.

    That is: writes replaced by an overwrite more than ``retention`` seconds
    ago (a new generation, without them, is committed first), and unfinished
    writes that a later commit superseded, untouched for ``retention`` seconds.
    """
    base = committed(fs)
    deleted: list[str] = []
    if base is not None and base.retired:
        pruned, expired = _without_expired(base, retention)
        if expired:
            stamp = now()
            commit(
                fs,
                msgspec.structs.replace(pruned, generation=base.generation + 1, committed_at=stamp),
            )
            _remove_writes(fs, expired)
            deleted += expired
    generation = base.generation if base else 0
    for write_id, ranks in pending_writes(fs, base).items():
        superseded = not _starts_from(ranks, generation)
        if superseded and _age(max(r.updated_at for r in ranks)) >= retention:
            _remove_writes(fs, [write_id])
            deleted.append(write_id)
    return deleted


def _without_expired(manifest: StoreManifest, retention: float) -> tuple[StoreManifest, list[str]]:
    """``manifest`` without the retired writes older than ``retention``, and their ids."""
    expired = [r.write_id for r in manifest.retired if _age(r.retired_at) >= retention]
    if not expired:
        return manifest, []
    kept = [r for r in manifest.retired if r.write_id not in expired]
    return msgspec.structs.replace(manifest, retired=kept), expired


def _age(stamp: str) -> float:
    return (_dt.datetime.now(_dt.UTC) - _dt.datetime.fromisoformat(stamp)).total_seconds()


def _starts_from(ranks: Sequence[RankManifest], generation: int) -> bool:
    return all(r.base_generation == generation for r in ranks)


def _in_start_order(chosen: dict[str, list[RankManifest]]) -> list[list[RankManifest]]:
    writes = [sorted(ranks, key=lambda r: r.rank) for ranks in chosen.values()]
    return sorted(writes, key=lambda ranks: (min(r.started_at for r in ranks), ranks[0].write_id))


def _next_manifest(
    fs: FileSystem, base: StoreManifest | None, writes: list[list[RankManifest]]
) -> StoreManifest:
    replaces = base is None or any(r.mode == "overwrite" for ranks in writes for r in ranks)
    schema = None if replaces or base is None else base.schema
    parts = [] if replaces or base is None else list(base.parts)
    arrays = [] if replaces or base is None else list(base.arrays)
    entries = [] if replaces or base is None else list(base.writes)
    expected = {} if replaces or base is None else _expected_of(base)
    stamp = now()
    retired = list(base.retired) if base is not None else []
    if replaces and base is not None:
        retired += [RetiredWrite(write_id=w.write_id, retired_at=stamp) for w in base.writes]
    for ranks in writes:
        for rank in ranks:
            if rank.schema is not None:
                where = f"write {rank.write_id}, rank {rank.rank}"
                schema = rank.schema if schema is None else schema.merge(rank.schema, where=where)
            parts.extend(rank.parts)
            arrays.extend(rank.arrays)
            for loader, n in rank.expected.items():
                expected[loader] = max(n, expected.get(loader, 0))
        entries.append(_write_entry(ranks))
    dl, index = row_keys(fs, parts)
    cover = coverage(dl, index, expected)
    return StoreManifest(
        store_id=base.store_id if base else uuid.uuid4().hex,
        generation=(base.generation if base else 0) + 1,
        created_at=base.created_at if base else stamp,
        committed_at=stamp,
        rows=sum(c.unique for c in cover.values()),
        schema=schema or Schema({}),
        writes=entries,
        parts=parts,
        arrays=arrays,
        coverage=cover,
        provenance={"libraries": library_versions(), "python": platform.python_version()},
        retired=retired,
    )


def _expected_of(base: StoreManifest) -> dict[int, int]:
    return {dl: c.expected for dl, c in base.coverage.items() if c.expected is not None}


def _write_entry(ranks: Sequence[RankManifest]) -> WriteEntry:
    first = ranks[0]
    return WriteEntry(
        write_id=first.write_id,
        mode=first.mode,
        world_size=first.world_size,
        ranks={r.rank: r.state for r in ranks},
        started_at=min(r.started_at for r in ranks),
        ended_at=max(r.updated_at for r in ranks),
        rows=sum(r.rows for r in ranks),
        index_source=first.index_source,
        provenance=first.provenance,
    )


def _remove_writes(fs: FileSystem, write_ids: Iterable[str]) -> None:
    for write_id in write_ids:
        # Best effort: a file that cannot be removed now is unreferenced and harmless.
        with contextlib.suppress(OSError):
            fs.delete_tree(layout.write_dir(write_id))


def library_versions() -> dict[str, str]:
    """Installed versions of predstore and the libraries that shape its files."""
    versions = {}
    for name in _LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions
