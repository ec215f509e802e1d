"""The commit protocol: rank manifests in, one store manifest out.

A commit of generation ``g`` creates the commit record ``_commits/<g>.json``
with put-if-absent, which decides it (a second committer of the same
generation gets ``CommitConflictError``), then publishes the store manifest
``manifest.json`` as a checkpoint that only ever moves forward (see
:mod:`predstore.format.history`). A committer that dies between the two
leaves a decided, unpublished commit: readers apply its record, the next
committer publishes it.

:func:`finalize` stitches the rank manifests of unfinished writes into the
next generation. It is what a single-rank writer does on close, what rank 0
does after the barrier at the end of ``trainer.predict``, and what
``predstore finalize`` does to recover a store whose writers died.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.metadata
import platform
import re
import uuid
from collections.abc import Iterable, Sequence

import msgspec

from predstore.errors import (
    CommitConflictError,
    CorruptStoreError,
    FormatVersionError,
    StoreExistsError,
    StoreNotCommittedError,
)
from predstore.format import history, layout
from predstore.format.coverage import extend
from predstore.format.fs import TEMP_MARKER, FileSystem
from predstore.format.manifest import (
    FORMAT_VERSION,
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
    """The newest committed store manifest, or ``None`` when the store was never committed.

    Reads ``manifest.json`` and looks for a newer commit record: three requests,
    whatever the length of the history. Readers use this; it writes nothing.
    """
    return history.load(fs, strict=False)[0]


def load_rank_manifest(fs: FileSystem, write_id: str, rank: int) -> RankManifest:
    path = layout.rank_manifest(write_id, rank)
    return decode(fs.read_metadata(path, MAX_MANIFEST_BYTES), RankManifest, source=fs.uri(path))


def save_rank_manifest(fs: FileSystem, manifest: RankManifest) -> None:
    fs.replace(layout.rank_manifest(manifest.write_id, manifest.rank), encode(manifest))


def committed(fs: FileSystem, *, repair: bool = False) -> StoreManifest | None:
    """The newest committed manifest, publishing it first if the checkpoint lags behind.

    Writers and recovery use this. A damaged next commit record raises
    ``CorruptStoreError``; with ``repair`` (finalize) it is set aside first.
    """
    while True:
        try:
            state, checkpoint = history.load(fs)
        except CorruptStoreError:
            if not repair:
                raise
            state, _ = history.load(fs, strict=False)
            history.set_aside(fs, state.generation + 1 if state else 1)
            continue
        if state is not None and checkpoint < state.generation:
            history.publish(fs, state)
        return state


def check_writable(fs: FileSystem, base: StoreManifest | None) -> None:
    """Refuse to commit onto a store of an older format (it reads as it is)."""
    if base is not None and base.format_version < FORMAT_VERSION:
        raise FormatVersionError(
            f"{fs.root} was written in predstore format version {base.format_version}; this "
            f"predstore reads it as it is and writes format {FORMAT_VERSION}: run "
            f"`predstore upgrade {fs.root}` (one commit) before writing to it"
        )


def pending_writes(fs: FileSystem, base: StoreManifest | None) -> dict[str, list[RankManifest]]:
    """Writes whose rank manifests exist but which ``base`` does not include (nor retired).

    This lists directories, which only writers and recovery do; readers rely
    on the store manifest alone.
    """
    done = {w.write_id for w in base.writes} | {r.write_id for r in base.retired} if base else set()
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
_ATTEMPTS = 8


def can_commit(ranks: Sequence[RankManifest], base: StoreManifest | None) -> bool:
    """Whether a write may still commit onto ``base``.

    A write that started from the current generation may. So may an append
    (or a resume of one) that started no earlier than the store's rows were
    last replaced: appends commute, so the loser of two concurrent appends
    still commits after the winner. An overwrite that another commit
    overtook, or an append to rows that an overwrite replaced since, is
    superseded.
    """
    generation = base.generation if base else 0
    starts = {r.base_generation for r in ranks}
    if len(starts) != 1:
        return False
    start = starts.pop()
    if start == generation:
        return True
    appends = all(r.mode != "overwrite" for r in ranks)
    return base is not None and appends and start > 0 and start >= base.replaced_generation


def finalize(
    fs: FileSystem,
    *,
    write_ids: Sequence[str] | None = None,
    retention: float = RETENTION,
    allow_shrink: bool = False,
) -> StoreManifest:
    """Commit the next generation of the store from the rank manifests of unfinished writes.

    With ``write_ids``, exactly those writes are committed. Without, every
    unfinished write that may still commit (see :func:`can_commit`) and holds
    committed rows is; superseded writes and writes without rows are left
    alone. Returns the committed manifest (the current one if there was
    nothing to commit). When another process commits first, the writes are
    committed on top of it if they still may.

    An unfinished overwrite (a rank did not close) that would leave fewer
    rows than the store it replaces, for some dataloader, is refused unless
    ``allow_shrink``: a job that died early must not empty a good store.

    Writes that an overwrite replaced are retired, not deleted: a reader that
    opened the store before keeps reading them for ``retention`` seconds; the
    first commit after that (or :func:`vacuum`) deletes them.
    """
    for attempt in range(_ATTEMPTS):
        try:
            return _finalize_once(fs, write_ids, retention, allow_shrink)
        except CommitConflictError:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _finalize_once(
    fs: FileSystem, write_ids: Sequence[str] | None, retention: float, allow_shrink: bool
) -> StoreManifest:
    base = committed(fs, repair=write_ids is None)
    check_writable(fs, base)
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
        chosen = {w: r for w, r in pending.items() if can_commit(r, base) and _rows(r)}
    for write_id, ranks in chosen.items():
        if not can_commit(ranks, base):
            raise CommitConflictError(
                f"{fs.root}: write {write_id} started from generation {ranks[0].base_generation}, "
                f"and a commit since then (the store is at generation "
                f"{base.generation if base else 0}) replaced what it would change; it is "
                "superseded (`predstore vacuum --discard-unfinished` deletes it)"
            )
    if not chosen:
        if base is not None:
            return base
        raise StoreNotCommittedError(
            f"{fs.root} holds no committed store and no unfinished write to finalize"
        )
    writes = _in_start_order(chosen)
    replaces = base is None or any(r.mode == "overwrite" for ranks in writes for r in ranks)
    manifest, expired = _without_expired(_next_manifest(fs, base, writes, replaces), retention)
    if replaces and base is not None and not allow_shrink:
        _refuse_shrinking(fs, base, manifest, writes)
    history.commit(fs, base, manifest, replaces=replaces, forgotten=expired)
    _remove_writes(fs, expired)
    return manifest


def _rows(ranks: Sequence[RankManifest]) -> int:
    return sum(r.rows for r in ranks)


def _refuse_shrinking(
    fs: FileSystem, base: StoreManifest, manifest: StoreManifest, writes: list[list[RankManifest]]
) -> None:
    unfinished = [r for ranks in writes for r in ranks if r.state != "closed"]
    if not unfinished:
        return
    for dl, old in base.coverage.items():
        new = manifest.coverage[dl].unique if dl in manifest.coverage else 0
        if new < old.unique:
            rank = unfinished[0]
            raise StoreExistsError(
                f"{fs.root}: write {rank.write_id} is an unfinished overwrite (rank {rank.rank} "
                f"is {rank.state}); committing it would replace the store's {old.unique} rows of "
                f"dataloader {dl} with {new}. Continue it with mode='resume', or pass "
                "allow_shrink=True (`predstore finalize --allow-shrink`) to replace the store "
                "anyway"
            )


def upgrade(fs: FileSystem) -> StoreManifest:
    """Rewrite the store manifest in the current format, as one commit; data files stay as they are."""
    base = committed(fs)
    if base is None:
        raise StoreNotCommittedError(f"{fs.root} holds no committed store to upgrade")
    if base.format_version == FORMAT_VERSION:
        return base
    # Format 1 did not record the last overwrite: older unfinished writes must not append.
    old = msgspec.structs.replace(base, replaced_generation=base.generation)
    manifest = msgspec.structs.replace(
        old, format_version=FORMAT_VERSION, generation=base.generation + 1, committed_at=now()
    )
    history.commit(fs, old, manifest, replaces=True, checkpoint=True)
    return manifest


def vacuum(
    fs: FileSystem, *, retention: float = RETENTION, discard_unfinished: bool = False
) -> list[str]:
    """Delete what no reader needs any more; return the write ids deleted.

    That is: writes replaced by an overwrite more than ``retention`` seconds
    ago (a new generation, without them, is committed first); unfinished
    writes without committed rows, untouched for ``retention`` seconds; and
    commit records older than ``retention`` that neither readers nor
    recovery need (a record of the whole store is committed first if the
    history does not start with one). Unfinished writes that hold committed
    rows are kept unless ``discard_unfinished``: ``finalize`` or
    ``mode="resume"`` may still recover them.
    """
    base = committed(fs)
    deleted: list[str] = []
    if base is not None and base.retired:
        check_writable(fs, base)
        pruned, expired = _without_expired(base, retention)
        if expired:
            manifest = msgspec.structs.replace(
                pruned, generation=base.generation + 1, committed_at=now()
            )
            history.commit(fs, base, manifest, replaces=False, forgotten=expired)
            _remove_writes(fs, expired)
            deleted += expired
            base = manifest
    for write_id, ranks in pending_writes(fs, base).items():
        idle = _age(max(r.updated_at for r in ranks)) >= retention
        if idle and (not _rows(ranks) or discard_unfinished):
            _remove_writes(fs, [write_id])
            deleted.append(write_id)
    if base is not None and base.format_version == FORMAT_VERSION:
        _prune_history(fs, base, retention)
    return deleted


def _prune_history(fs: FileSystem, base: StoreManifest, retention: float) -> None:
    """Delete records older than ``retention``, keeping a record of the whole store to start from.

    The history then starts with a whole-store record (committed here if the
    newest one is not), which is what recovery rebuilds a damaged checkpoint from.
    """
    older = [g for g in history.generations(fs) if g < base.generation]
    if not older or _age(history.read_record(fs, older[0]).committed_at) < retention:
        return
    full = _last_full_record(fs, base.generation)
    if full is None or full < base.generation:
        checkpoint = msgspec.structs.replace(
            base, generation=base.generation + 1, committed_at=now()
        )
        history.commit(fs, base, checkpoint, replaces=True, checkpoint=True)
        full = checkpoint.generation
    for generation in history.generations(fs):
        if generation >= full or _age(history.read_record(fs, generation).committed_at) < retention:
            break
        fs.delete_tree(layout.commit_record(generation))


def _last_full_record(fs: FileSystem, generation: int) -> int | None:
    """The newest generation up to ``generation`` whose record holds the whole store."""
    for g in range(generation, 0, -1):
        try:
            record = history.read_record(fs, g)
        except (FileNotFoundError, CorruptStoreError):
            return None
        if isinstance(record, StoreManifest) or record.replaces:
            return g
    return None


def _without_expired(manifest: StoreManifest, retention: float) -> tuple[StoreManifest, list[str]]:
    """``manifest`` without the retired writes older than ``retention``, and their ids."""
    expired = [r.write_id for r in manifest.retired if _age(r.retired_at) >= retention]
    if not expired:
        return manifest, []
    kept = [r for r in manifest.retired if r.write_id not in expired]
    return msgspec.structs.replace(manifest, retired=kept), expired


def _age(stamp: str) -> float:
    return (_dt.datetime.now(_dt.UTC) - _dt.datetime.fromisoformat(stamp)).total_seconds()


def _in_start_order(chosen: dict[str, list[RankManifest]]) -> list[list[RankManifest]]:
    writes = [sorted(ranks, key=lambda r: r.rank) for ranks in chosen.values()]
    return sorted(writes, key=lambda ranks: (min(r.started_at for r in ranks), ranks[0].write_id))


def _next_manifest(
    fs: FileSystem, base: StoreManifest | None, writes: list[list[RankManifest]], replaces: bool
) -> StoreManifest:
    old = None if replaces else base
    schema = old.schema if old else None
    arrays = list(old.arrays) if old else []
    entries = list(old.writes) if old else []
    expected = _expected_of(old) if old else {}
    stamp = now()
    retired = list(base.retired) if base is not None else []
    if replaces and base is not None:
        retired += [RetiredWrite(write_id=w.write_id, retired_at=stamp) for w in base.writes]
    added = []
    for ranks in writes:
        for rank in ranks:
            if rank.schema is not None:
                where = f"write {rank.write_id}, rank {rank.rank}"
                schema = rank.schema if schema is None else schema.merge(rank.schema, where=where)
            added.extend(rank.parts)
            arrays.extend(rank.arrays)
            for loader, n in rank.expected.items():
                expected[loader] = max(n, expected.get(loader, 0))
        entries.append(_write_entry(ranks))
    parts = list(old.parts) if old else []
    cover = extend(fs, parts, old.coverage if old else {}, added, expected)
    generation = (base.generation if base else 0) + 1
    return StoreManifest(
        store_id=base.store_id if base else uuid.uuid4().hex,
        generation=generation,
        created_at=base.created_at if base else stamp,
        committed_at=stamp,
        rows=sum(c.unique for c in cover.values()),
        schema=schema or Schema({}),
        writes=entries,
        parts=parts + added,
        arrays=arrays,
        coverage=cover,
        provenance={"libraries": library_versions(), "python": platform.python_version()},
        retired=retired,
        replaced_generation=generation if old is None else old.replaced_generation,
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
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str]:
    # Looked up once per process (13 ms, at the end of every write otherwise): the
    # libraries this process loaded do not change while it runs.
    versions = {}
    for name in _LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions
