"""What one viewer may read: the stores and registries named on its command line, and the
stores those registries link. Nothing else is ever opened, whatever a URL asks for.

Stores stay open between requests (their row index is built once) and are
opened again when a newer generation commits, so that an overwrite while the
viewer runs shows the new rows instead of failing on files it replaced.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from predstore.errors import CorruptStoreError, QueryError, StoreNotCommittedError
from predstore.read.store import Store
from predstore.read.store import open as open_store
from predstore.registry import Problem, Registry, default_cache_path, scan

T = TypeVar("T")

#: Seconds between two checks of a store's manifest for a newer generation.
RECHECK = 1.0
#: Seconds between two scans of a registry root (the runs page polls faster than runs change).
RESCAN = 2.0
#: Results kept per source (histograms, confusion matrices), newest first.
CACHED = 64


def _is_url(path: str) -> bool:
    return "://" in path


def _normal(path: str) -> str:
    return path if _is_url(path) else os.path.abspath(path)


def is_registry(path: str) -> bool:
    """A directory without a store manifest that holds run directories or a registry cache."""
    if _is_url(path) or not os.path.isdir(path):
        return False
    root = Path(path)
    if (root / "manifest.json").exists() or (root / "_commits").exists():
        return False
    return default_cache_path(root).exists() or any(root.rglob("sidecar.json"))


@dataclass
class _OpenStore:
    store: Store
    checked: float
    results: dict[tuple[Any, ...], Any] = field(default_factory=dict)


@dataclass
class _OpenRegistry:
    root: Path
    scanned: float = 0.0
    stores: set[str] = field(default_factory=set)
    problems: tuple[Problem, ...] = ()  # what the last scan found wrong in run directories


class Sources:
    """The stores and registries a viewer serves, opened on demand and kept fresh."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        if not paths:
            raise QueryError("predstore view needs a store or a registry root")
        self.stores: list[str] = []
        self.registries: list[_OpenRegistry] = []
        for raw in paths:
            path = os.fspath(raw)
            if is_registry(path):
                self.registries.append(_OpenRegistry(Path(path).resolve()))
            elif _is_url(path) or os.path.exists(path):
                self.stores.append(_normal(path))
            else:
                raise StoreNotCommittedError(
                    f"{path} does not exist: expected a store or a registry root"
                )
        self._open: dict[str, _OpenStore] = {}
        self._lock = threading.Lock()
        for url in filter(_is_url, self.stores):
            self.store(url)  # an object store cannot be checked without opening the store

    # -- stores -----------------------------------------------------------------------------

    def allowed(self, path: str) -> str:
        """``path`` in its normal form, if this viewer may read it; else a ``QueryError``."""
        normal = _normal(path)
        if normal in self.stores or any(normal in r.stores for r in self.registries):
            return normal
        for registry in self.registries:
            self.refresh(registry)
            if normal in registry.stores:
                return normal
        raise QueryError(
            f"{path} is not a store this viewer serves; it serves the stores on its command "
            "line and the stores its registries link"
        )

    def store(self, path: str) -> Store:
        """The open store at ``path``, opened again if a newer generation committed."""
        normal = self.allowed(path)
        with self._lock:
            held = self._open.get(normal)
            if held is not None and time.monotonic() - held.checked < RECHECK:
                return held.store
        fresh = open_store(normal)
        with self._lock:
            held = self._open.get(normal)
            if held is not None and _same(held.store, fresh):
                held.checked = time.monotonic()
                return held.store
            self._open[normal] = _OpenStore(fresh, time.monotonic())
        # Build the row index (seconds at 10M rows) while the first pages, which need only
        # the manifest and the Parquet columns, are being looked at.
        threading.Thread(target=_build_row_index, args=(fresh,), daemon=True).start()
        return fresh

    def cached(self, store: Store, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """``compute()`` once per store generation and ``key`` (histograms, matrices)."""
        normal = _normal(store.path)
        with self._lock:
            held = self._open.get(normal)
            if held is not None and held.store is store and key in held.results:
                return held.results[key]
        value = compute()
        with self._lock:
            held = self._open.get(normal)
            if held is not None and held.store is store:
                held.results[key] = value
                while len(held.results) > CACHED:
                    held.results.pop(next(iter(held.results)))
        return value

    def forget(self, store: Store) -> None:
        """Drop an open store whose files failed to read, so the next request opens it again."""
        with self._lock:
            held = self._open.get(_normal(store.path))
            if held is not None and held.store is store:
                del self._open[_normal(store.path)]

    # -- registries -------------------------------------------------------------------------

    def registry(self, root: str | None = None) -> tuple[_OpenRegistry, Registry]:
        """A registry of this viewer (the first one by default), scanned at most RESCAN ago."""
        if not self.registries:
            raise QueryError("this viewer serves no registry; start it on a registry root")
        chosen = self.registries[0]
        if root:
            matches = [r for r in self.registries if str(r.root) == root]
            if not matches:
                raise QueryError(f"{root} is not a registry this viewer serves")
            chosen = matches[0]
        self.refresh(chosen)
        return chosen, Registry.open(chosen.root)

    def refresh(self, registry: _OpenRegistry) -> None:
        """Scan the registry root again if the last scan is older than RESCAN."""
        if time.monotonic() - registry.scanned < RESCAN:
            return
        registry.problems = scan(registry.root).problems
        with Registry.open(registry.root) as reg:
            runs = reg.ls()["run_dir"].to_list()
            linked = {_normal(p) for run in runs for p in reg.show(run).stores["path"].to_list()}
        registry.stores = linked
        registry.scanned = time.monotonic()


def _build_row_index(store: Store) -> None:
    with contextlib.suppress(Exception):  # a damaged store says so when a page reads it
        store.rows  # noqa: B018 (a cached property: reading it builds the index)


def _same(old: Store, new: Store) -> bool:
    a, b = old.manifest, new.manifest
    return (a.store_id, a.generation) == (b.store_id, b.generation)


def retry_on_replaced(sources: Sources, store: Store, read: Callable[[Store], T]) -> T:
    """``read(store)``; if its files vanished (an overwrite committed and vacuumed), reopen once."""
    try:
        return read(store)
    except (CorruptStoreError, FileNotFoundError):
        sources.forget(store)
        return read(sources.store(store.path))
