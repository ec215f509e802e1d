"""What a new write may do, given what the store already holds.

A write starts from the store's committed generation. Its mode decides
what it may find there and what it does with it:

- ``error``: the path must be new or empty; an existing store is refused.
- ``overwrite``: the new write replaces the store when it commits; until
  then the old store stays readable.
- ``append``: rows are added to the committed store, whose schema the new
  rows must share; a (dataloader_idx, index) that is already committed is
  an error.
- ``resume``: continue an unfinished write: its committed rows are adopted,
  and rows that are committed already (there or in the store) are skipped
  rather than written twice. With nothing unfinished, it writes what the
  store does not hold yet.

Only rank 0 of a write checks the mode; every rank computes the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from predstore.errors import ConfigError, StoreExistsError
from predstore.format import layout
from predstore.format.commit import (
    can_commit,
    check_writable,
    committed,
    load_store_manifest,
    pending_writes,
)
from predstore.format.coverage import row_keys
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import Mode, PartEntry, RankManifest, StoreManifest
from predstore.format.schema import Schema

MODES = ("error", "overwrite", "append", "resume")
_OURS = {layout.MANIFEST, layout.COMMITS, layout.WRITES}


@dataclass
class CommittedKeys:
    """The (dataloader_idx, index) keys already committed, for fast membership tests.

    A part's keys are read only when a batch's indices fall in its index
    range, so an append of new indices to a large store reads no part.
    """

    fs: FileSystem
    parts: list[PartEntry]
    _read: NDArray = field(init=False)
    _known: dict[int, NDArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._read = np.zeros(len(self.parts), dtype=bool)
        self._lows = np.array([p.index_min for p in self.parts], dtype=np.int64)
        self._highs = np.array([p.index_max for p in self.parts], dtype=np.int64)

    @classmethod
    def of(cls, fs: FileSystem, parts: list[PartEntry]) -> CommittedKeys:
        return cls(fs, parts)

    def contains(self, dataloader_idx: int, indices: NDArray) -> NDArray:
        if len(indices):
            self._load(int(np.min(indices)), int(np.max(indices)))
        known = self._known.get(dataloader_idx)
        if known is None or not known.size:
            return np.zeros(len(indices), dtype=bool)
        at = np.minimum(np.searchsorted(known, indices), known.size - 1)
        return known[at] == indices

    def _load(self, low: int, high: int) -> None:
        near = np.flatnonzero(~self._read & (self._lows <= high) & (self._highs >= low))
        if not near.size:
            return
        self._read[near] = True
        dl, index = row_keys(self.fs, [self.parts[i] for i in near.tolist()])
        for d in np.unique(dl).tolist():
            old = self._known.get(d, np.zeros(0, np.int64))
            self._known[d] = np.union1d(old, index[dl == d])


@dataclass
class WritePlan:
    """Where a write starts from and what it must respect."""

    base: StoreManifest | None
    base_generation: int
    resumes: list[str]
    schema: Schema | None
    """The schema the new rows must have (append and resume), or ``None`` to infer it."""
    committed: CommittedKeys | None
    """Keys that must not be written again (append: error; resume: skipped)."""


def plan_write(fs: FileSystem, *, mode: Mode, write_id: str, check: bool) -> WritePlan:
    """The plan of a new write; with ``check`` (rank 0), refuse what ``mode`` forbids."""
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    base = committed(fs) if check else load_store_manifest(fs)
    check_writable(fs, base)
    generation = base.generation if base else 0
    unfinished = {w: r for w, r in unfinished_writes(fs, base).items() if w != write_id}
    if check:
        _check_mode(fs, mode, base, unfinished)
    if mode in ("error", "overwrite"):
        return WritePlan(base, generation, [], None, None)
    adopted = unfinished if mode == "resume" else {}
    ranks = [r for rs in adopted.values() for r in rs]
    parts = committed_parts(base, ranks)
    replaces = any(r.mode == "overwrite" for r in ranks)
    schema = _schema_of(None if replaces else base, ranks)
    keys = CommittedKeys.of(fs, parts) if parts else None
    return WritePlan(base, generation, sorted(adopted), schema, keys)


def unfinished_writes(fs: FileSystem, base: StoreManifest | None) -> dict[str, list[RankManifest]]:
    """Unfinished writes that a resume would continue: those that may still commit onto
    ``base`` and hold committed rows (a write without rows blocks nothing)."""
    return {
        w: ranks
        for w, ranks in pending_writes(fs, base).items()
        if can_commit(ranks, base) and any(r.rows for r in ranks)
    }


def committed_parts(base: StoreManifest | None, ranks: list[RankManifest]) -> list[PartEntry]:
    """Every part whose rows a resume of ``ranks`` keeps: the store's (unless they replace it), and theirs."""
    replaces = any(r.mode == "overwrite" for r in ranks)
    kept = [] if replaces or base is None else list(base.parts)
    return kept + [p for r in ranks for p in r.parts]


def _schema_of(base: StoreManifest | None, ranks: list[RankManifest]) -> Schema | None:
    schema = base.schema if base is not None and base.schema.keys else None
    for rank in ranks:
        if rank.schema is not None and rank.schema.keys:
            where = f"unfinished write {rank.write_id}, rank {rank.rank}"
            schema = rank.schema if schema is None else schema.merge(rank.schema, where=where)
    return schema


def _check_mode(
    fs: FileSystem,
    mode: Mode,
    base: StoreManifest | None,
    unfinished: Mapping[str, list[RankManifest]],
) -> None:
    foreign = [n for n in fs.list("") if n not in _OURS and not n.startswith(".")]
    if base is None and foreign:
        raise StoreExistsError(
            f"{fs.root} is not empty and is not a predstore store (it holds {foreign[:3]}); "
            "write the store to a new or empty directory"
        )
    if mode == "error" and base is not None:
        raise StoreExistsError(
            f"{fs.root} already holds a committed store ({base.rows} rows, generation "
            f"{base.generation}); pass mode='overwrite' to replace it or mode='append' to add rows"
        )
    if mode in ("error", "append") and unfinished:
        write_id, ranks = next(iter(unfinished.items()))
        rows = sum(r.rows for r in ranks)
        raise StoreExistsError(
            f"{fs.root} holds an unfinished write {write_id} ({rows} rows committed by its ranks); "
            "pass mode='resume' to continue it, run `predstore finalize` to commit what it "
            "wrote, or pass mode='overwrite' to replace everything"
        )
