"""PredictionDataset: the rows of a store as a map-style torch Dataset.

The dataset pickles as a description (the store's location and manifest,
the options, the source dataset): a process that receives it by pickling
(a spawned DataLoader worker) opens the store itself on its first read. A
forked worker inherits what the building process loaded (small values,
the row index) and shares its cache of decoded Zarr values, re-opening
only the array readers.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from predstore.datasets.arena import BatchArena
from predstore.datasets.batching import Items, Row, collate, items_of, read_rows
from predstore.datasets.rowreader import RowReader
from predstore.errors import ConfigError, MissingRowsError, OutOfRangeError, UnknownKeyError
from predstore.format import provenance
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import StoreManifest
from predstore.format.subsets import root_indices
from predstore.read.store import Store
from predstore.read.store import open as open_store

StoreLike = str | os.PathLike[str] | Store
Order = Literal["index", "storage"]
Missing = Literal["error", "skip"]

MiB = 1 << 20
DEFAULT_CACHE_BYTES = 256 * MiB
"""Decoded Zarr values kept: enough for 50,000 x float32[1000] logits."""
BATCH_ARENA_BYTES = 128 * MiB
"""Memory that forked DataLoader workers hand whole batches on in (only what is used is
touched): a dozen batches of 8 volumes of 1.25 MiB in flight."""


class PredictionDataset(Dataset[Any]):
    """Stored predictions as a map-style torch Dataset, alone or joined to the source dataset.

    Args:
        path_or_store: the store: a path, a URL (``s3://...``) or an open :class:`Store`.
        keys: the keys each item holds (one name or several); all keys by default.
        dataloader_idx: which dataloader's rows.
        order: ``"index"`` (item ``i`` is the ``i``-th row in global index order)
            or ``"storage"`` (the order the rows are stored, which reads chunk
            after chunk when not shuffled).
        as_torch: values as tensors (``False``: numpy arrays).
        transform: applied to each item's dict of values.
        source: a map-style dataset (or a ``Subset`` of one) to pair the rows with:
            item ``i`` becomes ``(source[i], predictions)``.
        missing: with ``source``, what a source sample without a stored prediction
            is: ``"error"`` at construction, or ``"skip"`` to leave it out.
        cache_bytes: how many bytes of decoded Zarr values to keep.
        preload: decode the Zarr keys at construction (shared with forked workers).
        storage_options: credentials and endpoint of an object store, when
            ``path_or_store`` is a URL (see docs/object-storage.md).
        check_source: refuse a ``source`` whose class, length or name differs from
            what the store recorded of the dataset it was predicted on.

    Example::

        import torch
        from torch.nn import functional as F
        from torch.utils.data import DataLoader, TensorDataset

        import predstore

        teacher = predstore.PredictionDataset("preds.pstore", ["logits"])
        teacher[0]  # {"logits": tensor([...]), "index": 0, "name": "case-0"}
        train_set = TensorDataset(torch.randn(8, 4), torch.arange(8) % 10)
        student = torch.nn.Linear(4, 10)
        pairs = predstore.PredictionDataset("preds.pstore", ["logits"], source=train_set)
        for (x, y), preds in DataLoader(pairs, batch_size=4, shuffle=True):
            soft = F.softmax(preds["logits"], dim=1)
            loss = F.cross_entropy(student(x), soft) + F.cross_entropy(student(x), y)

    Item ``i`` is a dict of the chosen ``keys`` (all by default) for the
    ``i``-th row of ``dataloader_idx`` in index order (``order="storage"``:
    in the order the rows are stored, which reads chunk after chunk when
    not shuffled), plus ``index`` (the row's global index, an int) and
    ``name`` (a str, when the store has names). Values are tensors (numpy
    with ``as_torch=False``) of each key's own dtype and per-sample shape,
    bfloat16 included; ragged keys give each row its own shape, strings stay
    str, and a null of a Parquet key is ``None``. ``transform`` is applied
    to each such dict.

    With ``source`` (a map-style dataset, or a ``Subset`` of one, whose
    positions are the global indices the predictions were written with),
    item ``i`` is ``(source[i], predictions)``: the source's item and the
    dict above for the same global index. A source sample without a stored
    prediction is an error at construction (``MissingRowsError``, naming
    how many and which), unless ``missing="skip"`` leaves it out. Rows pair
    by position in the source's root dataset, so a source whose class,
    length or name differs from what the store recorded of the dataset it
    was predicted on is refused (``ConfigError``); ``check_source=False``
    allows it (a copy of the same samples under another class, say).

    Construction reads the small (Parquet) values and the names. A batch
    (``__getitems__``, what DataLoader calls) is read at once. Fixed-shape
    Zarr keys stored uncompressed in local files are read in place from
    the page cache (mapped, each chunk's checksum checked once); others are decoded into a cache of up to ``cache_bytes`` as reads
    need them, shared with forked DataLoader workers and kept across
    epochs (``preload=True``: decoded at construction); keys that do not
    fit keep that many bytes of recently used chunks instead. For the
    fastest loading, pass ``collate_fn=PredictionDataset.collate``. Both it
    and ``default_collate`` take a batch whole and, in forked workers, hand
    it to the main process in memory they share, used again once the
    batch's tensors are gone (see :mod:`predstore.datasets.arena`).
    """

    def __init__(
        self,
        path_or_store: StoreLike,
        keys: Sequence[str] | str | None = None,
        *,
        dataloader_idx: int = 0,
        order: Order = "index",
        as_torch: bool = True,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        source: Dataset[Any] | None = None,
        missing: Missing = "error",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        preload: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        check_source: bool = True,
    ) -> None:
        store = as_store(path_or_store, storage_options)
        check_choice("order", order, ("index", "storage"))
        check_choice("missing", missing, ("error", "skip"))
        if source is not None and order != "index":
            raise ConfigError(
                f"with a source, items follow the source: order must be 'index', got {order!r}"
            )
        if source is not None and not hasattr(source, "__len__"):
            raise ConfigError(
                f"source must be a map-style dataset with a length, got {type(source).__name__}"
            )
        self.keys = chosen_keys(store, keys)
        self.dataloader_idx = int(dataloader_idx)
        if source is not None and check_source:
            check_source_matches(store, source, self.dataloader_idx)
        self.order, self.as_torch, self.transform = order, as_torch, transform
        self.source, self.missing = source, missing
        self.cache_bytes, self.preload = int(cache_bytes), preload
        self._fs: FileSystem = store.fs
        self._manifest: StoreManifest = store.manifest
        reader = RowReader(store, self.keys, self.dataloader_idx, cache_bytes=self.cache_bytes)
        items, source_positions = self._plan(reader)
        reader.load(zarr=preload)  # here, so that forked DataLoader workers share it
        arena = BatchArena.for_workers(BATCH_ARENA_BYTES)
        self._state: _State | None = _State(reader, items, source_positions, arena)
        self._length = len(items)

    # -- the Dataset protocol ----------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, item: int) -> Any:
        found = self.__getitems__([item])[0]
        return dict(found) if type(found) is Row else found  # a plain dict, as it always was

    def __getitems__(self, items: Sequence[int]) -> Items:
        """The items at ``items``, read together (DataLoader calls this once per batch)."""
        numbers = self._check(items)
        state = self._process_state()
        values = read_rows(state.reader, state.items[numbers])
        if self.source is None and self.transform is None:
            return Items(values, as_torch=self.as_torch, arena=state.arena)  # rows made if asked
        preds: list[Any] = items_of(values, as_torch=self.as_torch)
        whole: dict[str, Any] | None = values  # what collate() may take at once
        if self.transform is not None:
            preds, whole = [self.transform(p) for p in preds], None
        if self.source is None:
            return Items(whole, preds, as_torch=self.as_torch, arena=state.arena)
        at = numbers if state.source_positions is None else state.source_positions[numbers]
        sources = source_items(self.source, at.tolist())
        pairs = list(zip(sources, preds, strict=True))
        return Items(whole, pairs, sources, as_torch=self.as_torch, arena=state.arena)

    @staticmethod
    def collate(batch: Sequence[Any]) -> Any:
        """A ``collate_fn`` for this dataset: the batch whole, as fast as it gets.

        Pass it as ``DataLoader(dataset, ..., collate_fn=PredictionDataset.collate)``.
        The batch is what ``default_collate`` makes of the items, except that
        ragged keys and keys with nulls stay lists, and that it is taken
        whole from what the dataset read (no tensor per row to stack) and,
        in a worker, sent to the main process as one shared buffer.
        """
        return collate(batch)

    # -- lookups -------------------------------------------------------------

    def by_name(self, name: str) -> Any:
        """The item of the row called ``name`` (``MissingRowsError`` if it is absent or not unique)."""
        state = self._process_state()
        if not state.reader.has_names:
            raise MissingRowsError(
                f"name {name!r} was asked for, but the store {self._fs.root} holds no names "
                "(it was written without them); look rows up with by_index"
            )
        position = state.reader.store.rows.locate_names([name], self.dataloader_idx)[0]
        return self[self._item_of(state, int(position) - state.reader.span.start, repr(name))]

    def by_index(self, index: int) -> Any:
        """The item of the row with global index ``index`` (``MissingRowsError`` if absent)."""
        state = self._process_state()
        position = state.reader.store.rows.locate([index], self.dataloader_idx)[0]
        return self[self._item_of(state, int(position) - state.reader.span.start, f"index {index}")]

    def __repr__(self) -> str:
        joined = f", joined to {type(self.source).__name__}" if self.source is not None else ""
        return (
            f"<predstore.PredictionDataset {self._fs.root!r}: {len(self)} items of dataloader "
            f"{self.dataloader_idx}, keys {self.keys}{joined}>"
        )

    # -- per-process state -----------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # A description only: every process opens the store on its first read.
        return {k: v for k, v in self.__dict__.items() if k != "_state"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._state = None

    def _process_state(self) -> _State:
        state = self._state
        if state is None:  # unpickled, in a spawned worker for example: open the store here
            store = Store(self._fs, self._manifest)
            reader = RowReader(store, self.keys, self.dataloader_idx, cache_bytes=self.cache_bytes)
            state = self._state = _State(reader, *self._plan(reader))
        elif state.reader.pid != os.getpid():  # a forked worker: share what the parent loaded
            reader = state.reader.in_this_process()
            state = self._state = _State(reader, state.items, state.source_positions, state.arena)
        return state

    def _plan(self, reader: RowReader) -> tuple[NDArray, NDArray | None]:
        """Per item, its row's local position; with a source, also its source position."""
        if self.source is None:
            if self.order == "storage":
                return reader.storage_order(), None
            return np.arange(len(reader)), None
        wanted = root_indices(self.source)
        at = np.searchsorted(reader.index, wanted)
        found = at < len(reader)
        found[found] = reader.index[at[found]] == wanted[found]
        if found.all():
            return at, None
        if self.missing == "error":
            absent = np.flatnonzero(~found)
            raise MissingRowsError(
                f"{absent.size} of the {wanted.size} samples of the source have no prediction in "
                f"dataloader {self.dataloader_idx} of the store {self._fs.root} (source positions "
                f"{absent[:5].tolist()} with global indices {wanted[absent[:5]].tolist()}, first "
                f"5); the store holds {len(reader)} rows there, indices "
                f"{_span(reader.index)}. Pass missing='skip' to leave such samples out"
            )
        kept = np.flatnonzero(found)
        return at[kept], kept

    def _check(self, items: Sequence[int]) -> NDArray:
        try:
            numbers = np.fromiter((operator.index(i) for i in items), np.int64)
        except TypeError:
            raise TypeError(
                f"dataset items are asked for by int position, got {list(items)[:5]!r}"
            ) from None
        n = self._length
        bad = (numbers < -n) | (numbers >= n)
        if bad.any():
            has = f"has {n} items (0..{n - 1})" if n else "is empty"
            raise OutOfRangeError(
                f"item {int(numbers[bad][0])} is out of range: the dataset {has}; "
                "look a row up by its global index with by_index()"
            )
        return np.where(numbers < 0, numbers + n, numbers)

    def _item_of(self, state: _State, local: int, what: str) -> int:
        if self.source is None and self.order == "index":
            return local
        found = np.flatnonzero(state.items == local)
        if not found.size:
            index = int(state.reader.index[local])
            raise MissingRowsError(
                f"the row of {what} (global index {index}) is in the store, but no item of this "
                "dataset refers to it: the source does not hold that index"
            )
        return int(found[0])


class _State:
    """What one process has opened: the row reader and the item -> row plan; and the memory
    that forked workers hand whole batches on in, when this process made the dataset."""

    def __init__(
        self,
        reader: RowReader,
        items: NDArray,
        source_positions: NDArray | None,
        arena: BatchArena | None = None,
    ) -> None:
        self.reader, self.items, self.source_positions = reader, items, source_positions
        self.arena = arena


# -- helpers the sequential dataset shares -------------------------------------------


def as_store(path_or_store: StoreLike, storage_options: Mapping[str, Any] | None = None) -> Store:
    """The store at a path or URL (opened with ``storage_options``), or the store given."""
    if isinstance(path_or_store, Store):
        if storage_options:
            raise ConfigError(
                "storage_options apply to a store's path or URL; this Store is open already "
                "(pass them to predstore.open instead)"
            )
        return path_or_store
    if isinstance(path_or_store, str | os.PathLike):
        return open_store(path_or_store, storage_options=storage_options)
    raise ConfigError(
        f"expected a store path or a predstore.Store, got {type(path_or_store).__name__}"
    )


def chosen_keys(store: Store, keys: Sequence[str] | str | None) -> list[str]:
    """``keys`` checked against the store (all of its keys for ``None``)."""
    if keys is None:
        return store.keys()
    chosen = [keys] if isinstance(keys, str) else list(keys)
    unknown = [k for k in chosen if k not in store.schema.keys]
    if unknown:
        raise UnknownKeyError(
            f"key {unknown[0]!r} is not in the store {store.path}; it holds {store.keys()}"
        )
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"keys must not repeat, got {chosen}")
    return chosen


def check_source_matches(store: Store, source: Any, dataloader_idx: int) -> None:
    """Refuse a source unlike every dataset the store's writes recorded for the dataloader."""
    records = [
        record
        for write in store.manifest.writes
        if isinstance(record := write.provenance.get("datasets", {}).get(str(dataloader_idx)), dict)
    ]
    found = [provenance.differences(record, source) for record in records]
    if not records or not all(found):
        return
    raise ConfigError(
        f"source {type(provenance.root_dataset(source)).__name__} is not the dataset dataloader "
        f"{dataloader_idx} of the store {store.fs.root} was predicted on: it has "
        f"{'; '.join(found[-1])}. Rows are paired by position in the source, so another dataset "
        "gets other samples' predictions; pass the dataset that was predicted on, or "
        "check_source=False if this one holds the same samples in the same order"
    )


def source_items(source: Any, positions: list[int]) -> list[Any]:
    many = getattr(source, "__getitems__", None)
    if many is not None:
        return list(many(positions))
    return [source[i] for i in positions]


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _span(index: NDArray) -> str:
    return f"{int(index[0])}..{int(index[-1])}" if len(index) else "(none)"
