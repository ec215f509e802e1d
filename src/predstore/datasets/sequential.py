"""SequentialPredictionDataset: whole passes over a store, chunk after chunk.

The rows of one dataloader are taken in storage order and cut into *units*:
runs of rows that fill whole Zarr chunks (about a MiB of decoded values). An
epoch orders the units (shuffled or not), lays their rows end to end and
cuts that sequence into equal ranges, one per DDP rank, then each rank's
range into whole batches, one contiguous share per DataLoader worker. Every
process reads only its own units, each once, with one ranged read and a
parallel decode per unit; shuffling mixes the rows of a buffer of units.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from queue import Queue
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from predstore.datasets.batching import items_of, whole_batch
from predstore.datasets.map_style import StoreLike, as_store, check_choice, chosen_keys
from predstore.datasets.rowreader import RowReader
from predstore.errors import ConfigError
from predstore.format.dtypes import NDArray
from predstore.format.fs import FileSystem
from predstore.format.manifest import StoreManifest
from predstore.format.schema import INDEX, NAME
from predstore.read.arrays import Job, run_jobs
from predstore.read.store import Store

Balance = Literal["pad", "drop", "none"]

MiB = 1 << 20
UNIT_BYTES = 1 * MiB
"""Decoded bytes per unit: the grain of reading, of shuffling and of splitting."""
BUFFER_BYTES = 32 * MiB
"""Default shuffle buffer per process, in decoded bytes."""
CACHE_BYTES = 16 * MiB
"""Decoded chunks kept per process: a unit's boundary chunk is then decoded once."""
ROWS_PER_READ = 256
"""Rows read at a time when items are yielded one by one."""


class SequentialPredictionDataset(IterableDataset[Any]):
    """One fast pass over a store per epoch: chunk after chunk, split across workers and ranks.

    Args:
        path_or_store: the store: a path, a URL (``s3://...``) or an open :class:`Store`.
        keys: the keys each element holds (one name or several); all keys by default.
        dataloader_idx: which dataloader's rows.
        batch_size: rows per element (a whole batch); ``None`` for one item per element.
        shuffle: shuffle the units of rows and the rows within a buffer.
        buffer_size: rows shuffled together (default: about 32 MiB of values).
        seed: with the epoch number, fixes each epoch's order; ``None`` draws it
            from torch's random generator.
        drop_last: drop each rank's last, short batch.
        balance: how ranks get equal shares: ``"pad"``, ``"drop"`` or ``"none"``.
        as_torch: values as tensors (``False``: numpy arrays).
        transform: applied to each element.
        rank: this process's share (default: from ``torch.distributed``); with ``world_size``.
        world_size: the number of shares; with ``rank``.
        storage_options: credentials and endpoint of an object store, when
            ``path_or_store`` is a URL (see docs/object-storage.md).

    Example::

        from torch.utils.data import DataLoader

        import predstore

        passes = predstore.SequentialPredictionDataset(
            "preds.pstore", ["logits"], batch_size=4, shuffle=True
        )
        for batch in DataLoader(passes, batch_size=None):
            batch["logits"]  # a (4, 10) tensor; batch["index"], batch["name"]

    With ``batch_size``, each element is a whole batch (a dict of stacked
    tensors, ``index`` a tensor and ``name`` a list; ragged keys and nulls
    as lists): give the DataLoader ``batch_size=None``. Without it, the
    elements are the items of :class:`PredictionDataset`, one by one.

    Rows come in storage order; ``shuffle=True`` shuffles the order of the
    units (about a MiB of rows each) and the rows within a buffer of
    ``buffer_size`` rows (about 32 MiB of values by default). Each DDP rank
    (from ``torch.distributed``, or ``rank`` and ``world_size``) and each
    DataLoader worker reads its own share, never another's. ``balance``
    decides how ranks get equal shares, which DDP needs: ``"pad"`` repeats
    a few rows of the epoch on the short ranks (as DistributedSampler does),
    ``"drop"`` leaves the last few rows out, ``"none"`` lets shares differ
    by one row (every row exactly once). ``drop_last`` drops each rank's
    last, short batch.

    The order of an epoch follows ``seed`` and the epoch number: call
    :meth:`set_epoch` at each epoch, as with DistributedSampler (without
    it, each iteration of this object counts as an epoch). With
    ``seed=None``, the order within each worker is drawn from torch's
    random generator, so it changes every epoch all the same.
    """

    def __init__(
        self,
        path_or_store: StoreLike,
        keys: Sequence[str] | str | None = None,
        *,
        dataloader_idx: int = 0,
        batch_size: int | None = None,
        shuffle: bool = False,
        buffer_size: int | None = None,
        seed: int | None = None,
        drop_last: bool = False,
        balance: Balance = "pad",
        as_torch: bool = True,
        transform: Callable[[Any], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        store = as_store(path_or_store, storage_options)
        check_choice("balance", balance, ("pad", "drop", "none"))
        for name, value in (("batch_size", batch_size), ("buffer_size", buffer_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive int or None, got {value!r}")
        if (rank is None) != (world_size is None):
            raise ConfigError("pass rank and world_size together, or neither")
        if world_size is not None and not (
            isinstance(world_size, int) and isinstance(rank, int) and 0 <= rank < world_size
        ):
            raise ConfigError(f"rank must be in [0, world_size), got {rank} of {world_size}")
        self.keys = chosen_keys(store, keys)
        self.dataloader_idx = int(dataloader_idx)
        self.batch_size, self.shuffle, self.buffer_size = batch_size, shuffle, buffer_size
        self.seed, self.drop_last, self.balance = seed, drop_last, balance
        self.as_torch, self.transform = as_torch, transform
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._epoch_set = False
        self._fs: FileSystem = store.fs
        self._manifest: StoreManifest = store.manifest
        reader = RowReader(store, self.keys, self.dataloader_idx, cache_bytes=CACHE_BYTES)
        reader.load()  # here, so that forked DataLoader workers share it
        self._reader: RowReader | None = reader
        self._rows = len(reader)
        self._world_at_pickling: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` for the next passes (the same on every rank and worker)."""
        self.epoch, self._epoch_set = int(epoch), True

    def __len__(self) -> int:
        """Elements this rank yields per epoch: batches with ``batch_size``, items without."""
        rank, world = self._world()
        rows = _rank_rows(self._rows, rank, world, self.balance)
        if self.batch_size is None:
            return rows
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __repr__(self) -> str:
        return (
            f"<predstore.SequentialPredictionDataset {self._fs.root!r}: {self._rows} rows of "
            f"dataloader {self.dataloader_idx}, keys {self.keys}, batch_size {self.batch_size}, "
            f"shuffle {self.shuffle}>"
        )

    # -- one pass ----------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        if not self._epoch_set:
            self.epoch += 1
        reader = self._process_reader()
        order = reader.storage_order()
        units = _units(reader, order, self._unit_rows(reader))
        lengths = np.diff(units)
        # The same unit order on every rank and worker: their shares never overlap.
        if self.shuffle:
            unit_order = np.random.default_rng([self.seed or 0, epoch]).permutation(len(lengths))
        else:
            unit_order = np.arange(len(lengths))
        lo, hi = self._share()
        pieces = _pieces(units[:-1][unit_order], lengths[unit_order], lo, hi)
        chunks = (order[a:b] for a, b in pieces)
        rng = self._local_rng(epoch) if self.shuffle else None
        rows = self.batch_size or ROWS_PER_READ
        buffer = max(rows, self._buffer_rows(reader))
        longest = int(lengths.max()) if len(lengths) else 1
        for values in _batches(reader, chunks, rows, buffer, longest, rng):
            if self.batch_size is None:
                yield from self._items(values)
            else:
                yield self._apply(self._batch(values))

    def _share(self) -> tuple[int, int]:
        """This process's rows, as a range of the epoch's sequence (past its end: wrapped)."""
        rank, world = self._world()
        n = self._rows
        per = _rank_rows(n, rank, world, self.balance)
        start = rank * n // world if self.balance == "none" else rank * per
        if self.batch_size is not None and self.drop_last:
            per -= per % self.batch_size
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.batch_size is None:
            return start + worker * per // workers, start + (worker + 1) * per // workers
        batches = -(-per // self.batch_size)
        first, last = worker * batches // workers, (worker + 1) * batches // workers
        return start + first * self.batch_size, start + min(last * self.batch_size, per)

    def _world(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return self._world_at_pickling or (0, 1)

    def _local_rng(self, epoch: int) -> np.random.Generator:
        rank, _ = self._world()
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if self.seed is not None:
            return np.random.default_rng([self.seed, epoch, rank, worker])
        if info is not None:  # the DataLoader drew one base seed per pass for all its workers
            base = (info.seed - info.id) % 2**63
        else:
            base = int(torch.empty((), dtype=torch.int64).random_().item()) % 2**63
        return np.random.default_rng([base, rank, worker])

    def _items(self, values: dict[str, Any]) -> Iterator[Any]:
        for item in items_of(values, as_torch=self.as_torch):
            yield self._apply(item)

    def _batch(self, values: dict[str, Any]) -> dict[str, Any]:
        return whole_batch(values, as_torch=self.as_torch)

    def _apply(self, element: Any) -> Any:
        return element if self.transform is None else self.transform(element)

    # -- sizes and per-process state ----------------------------------------------

    def _bytes_per_row(self) -> float:
        schema = self._manifest.schema.keys
        arrays = sum(a.payload_bytes for a in self._manifest.arrays if a.key in self.keys)
        parquet = sum(schema[k].row_bytes for k in self.keys if schema[k].storage == "parquet")
        return max(1.0, arrays / max(1, self._manifest.rows) + parquet)

    def _unit_rows(self, reader: RowReader) -> int:
        """Rows per unit: a power of two of about UNIT_BYTES, whole chunks of every fixed key."""
        fixed = [
            a.chunks[0]
            for a in self._manifest.arrays
            if a.key in self.keys and not reader.store.schema.keys[a.key].ragged
        ]
        rows = max([1, *fixed, int(UNIT_BYTES / self._bytes_per_row())])
        return 1 << (rows.bit_length() - 1)

    def _buffer_rows(self, reader: RowReader) -> int:
        if self.buffer_size is not None:
            return self.buffer_size
        return max(self._unit_rows(reader), int(BUFFER_BYTES / self._bytes_per_row()))

    def _process_reader(self) -> RowReader:
        if self._reader is None:  # unpickled, in a spawned worker for example: open the store here
            store = Store(self._fs, self._manifest)
            self._reader = RowReader(store, self.keys, self.dataloader_idx, cache_bytes=CACHE_BYTES)
        else:  # in a forked worker: share what the parent loaded
            self._reader = self._reader.in_this_process()
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        # A description only; the rank is resolved here, where torch.distributed is set up
        # (a spawned DataLoader worker has no process group of its own).
        state = {k: v for k, v in self.__dict__.items() if k != "_reader"}
        state["_world_at_pickling"] = self._world()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reader = None


def _rank_rows(n: int, rank: int, world: int, balance: Balance) -> int:
    if balance == "pad":
        return -(-n // world)
    if balance == "drop":
        return n // world
    return (rank + 1) * n // world - rank * n // world


def _units(reader: RowReader, order: NDArray, unit_rows: int) -> NDArray:
    """Where each unit starts in ``order`` (and, last, its end): runs of one part's whole chunks."""
    if not len(order):
        return np.zeros(1, np.int64)
    part = reader.part[order].astype(np.int64)
    key = part * (int(reader.row.max()) // unit_rows + 1) + reader.row[order] // unit_rows
    starts = np.flatnonzero(np.diff(key)) + 1
    return np.concatenate([[0], starts, [len(order)]]).astype(np.int64)


def _pieces(starts: NDArray, lengths: NDArray, lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """The ranges of ``order`` that make up ``[lo, hi)`` of the units laid end to end.

    Positions past the end wrap around to the start (the rows ``balance="pad"`` repeats).
    """
    total = int(lengths.sum())
    if total == 0 or hi <= lo:
        return
    ends = np.cumsum(lengths)
    while lo < hi:
        wrapped = lo % total
        u = int(np.searchsorted(ends, wrapped, side="right"))
        offset = wrapped - (int(ends[u]) - int(lengths[u]))
        take = min(int(lengths[u]) - offset, hi - lo)
        yield int(starts[u]) + offset, int(starts[u]) + offset + take
        lo += take


def _batches(
    reader: RowReader,
    chunks: Iterator[NDArray],
    rows: int,
    buffer: int,
    longest: int,
    rng: np.random.Generator | None,
) -> Iterator[dict[str, Any]]:
    """Batches of ``rows`` rows (the last may be short), shuffled within ``buffer`` rows if ``rng``.

    ``longest`` bounds the rows of one chunk of ``chunks``. The rows of a
    block that do not fill a last batch open the next block's first batch.
    """
    carry: dict[str, Any] | None = None
    for block in _filled(reader, chunks, buffer + longest, buffer):
        n = block.count
        order = rng.permutation(n) if rng is not None else np.arange(n)
        start = 0
        if carry is not None:
            start = min(n, rows - len(carry["index"]))
            carry = _join(carry, block.take(order[:start]))
            if len(carry["index"]) == rows:
                yield carry
                carry = None
        end = start + (n - start) // rows * rows
        for first in range(start, end, rows):
            yield block.take(order[first : first + rows])
        if end < n:
            carry = block.take(order[end:])
    if carry is not None:
        yield carry


def _filled(
    reader: RowReader, chunks: Iterator[NDArray], capacity: int, threshold: int
) -> Iterator[_Block]:
    """Blocks of at least ``threshold`` rows (the last may hold fewer), read ahead.

    Two blocks take turns: a thread of its own reads and decodes rows into
    one (file reads and decoding release the GIL) while the consumer
    takes batches out of the other, so reading overlaps with whatever is
    done with the batches. A block is reused once the consumer asks for
    the next one.
    """
    free: Queue[_Block | None] = Queue()
    ready: Queue[tuple[_Block | None, BaseException | None]] = Queue()
    for _ in range(2):
        free.put(_Block(reader, capacity))
    stop = threading.Event()

    def produce() -> None:
        try:
            block, pending, count = free.get(), [], 0
            for local in chunks:
                if stop.is_set() or block is None:
                    return
                pending.append(local)
                count += len(local)
                if count >= threshold:
                    block.add(pending)
                    ready.put((block, None))
                    block, pending, count = free.get(), [], 0
            if block is not None and pending:
                block.add(pending)
                ready.put((block, None))
            ready.put((None, None))
        except BaseException as e:  # handed to the consumer, raised there
            ready.put((None, e))

    thread = threading.Thread(target=produce, name="predstore-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            block, error = ready.get()
            if error is not None:
                raise error
            if block is None:
                return
            yield block
            block.clear()
            free.put(block)
    finally:
        stop.set()
        free.put(None)  # wakes a producer waiting for a block
        thread.join()


class _Block:
    """Rows read for the shuffle, in arrays allocated once per pass and reused.

    Touching new memory is slow (and a pass would otherwise allocate its
    whole size again): keys whose rows form one array are decoded straight
    into the block's arrays; the others (ragged, strings, nulls) are kept as
    lists of pieces.
    """

    def __init__(self, reader: RowReader, capacity: int) -> None:
        self.reader, self.count = reader, 0
        self.keys = [*reader.keys, INDEX, *([NAME] if reader.has_names else [])]
        self.arrays: dict[str, NDArray] = {INDEX: np.empty(capacity, np.int64)}
        for key in reader.keys:
            plain = reader.plain(key)
            if plain is not None:  # pages are only touched once rows land there
                self.arrays[key] = np.empty((capacity, *plain[0]), plain[1])
        self.pieces: dict[str, list[Any]] = {}
        self._joined: dict[str, Any] | None = None

    def add(self, chunks: list[NDArray]) -> None:
        """Read the rows of ``chunks``, decoding every chunk of them at once on the decode pool."""
        jobs: list[Job] = []
        for local in chunks:
            at, n = self.count, len(local)
            for key in self.reader.keys:
                if key in self.arrays:
                    jobs += self.reader.read_into(key, local, self.arrays[key][at : at + n])
                else:
                    self.pieces.setdefault(key, []).append(self.reader.values(key, local))
            self.arrays[INDEX][at : at + n] = self.reader.index[local]
            if self.reader.has_names:
                self.pieces.setdefault(NAME, []).append(self.reader.name_array(local))
            self.count += n
        run_jobs(jobs)

    def take(self, rows: NDArray) -> dict[str, Any]:
        """The values of ``rows`` of the block, copied out of it."""
        if self._joined is None:
            self._joined = {k: _concat(p) for k, p in self.pieces.items()}
        joined = self._joined
        return {
            k: self.arrays[k][rows] if k in self.arrays else _take(joined[k], rows)
            for k in self.keys
        }

    def clear(self) -> None:
        self.count, self.pieces, self._joined = 0, {}, None


def _join(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: _concat([a[k], b[k]]) for k in a}


def _concat(pieces: list[Any]) -> Any:
    if len(pieces) == 1:
        return pieces[0]
    if isinstance(pieces[0], list):
        return [row for p in pieces for row in p]
    if any(np.ma.isMA(p) for p in pieces):
        return np.ma.concatenate(pieces)  # type: ignore[no-untyped-call]
    return np.concatenate(pieces)


def _take(value: Any, rows: NDArray) -> Any:
    if isinstance(value, list):
        return [value[i] for i in rows.tolist()]
    return value[rows]
