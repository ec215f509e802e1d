"""StoreWriter: write a store from any loop, one rank at a time."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from predstore.errors import (
    ConfigError,
    InvalidBatchError,
    SchemaError,
    StoreExistsError,
)
from predstore.format import dtypes, layout
from predstore.format.commit import finalize, save_rank_manifest
from predstore.format.fs import FileSystem, filesystem_for
from predstore.format.manifest import (
    ArrayEntry,
    PartEntry,
    RankManifest,
    RankState,
    StoreManifest,
    now,
)
from predstore.format.schema import KeySchema, Schema, offset_column, shape_column
from predstore.write import codecs
from predstore.write.arrays import ArrayStream, pow2_floor
from predstore.write.batch import Batch, Column, flatten, normalize
from predstore.write.jobs import OrderedJobs
from predstore.write.keys import conform, infer
from predstore.write.options import WriteOptions, resolve
from predstore.write.parts import PartWriter, SealedPart
from predstore.write.plan import plan_write

_log = logging.getLogger("predstore")


class StoreWriter:
    """Writes one rank's rows to a store; the rank manifest commits them part by part.

    Args:
        path: the store: a directory, or an object store URL (``s3://bucket/prefix``,
            ``gs://``, ``az://``).
        options: a :class:`predstore.WriteOptions`; its fields may also be given by
            name (``mode=``, ``keys=``, the sizes, the codec, ``storage_options=``...).
        rank: this writer's rank among ``world_size``.
        world_size: how many ranks write this ``write_id``.
        write_id: the id every rank of one write shares (default: a new one;
            required with ``world_size > 1``).
        expected: the number of samples of each dataloader, for the coverage figures.
        index_source: where the rows' indices come from, recorded in the manifest.
        provenance: extra JSON-able facts recorded with the write.
        filesystem: the :class:`~predstore.format.fs.FileSystem` to write through
            (default: the one ``path`` names).
        option_values: :class:`predstore.WriteOptions` fields by name.

    Example::

        import numpy as np
        import predstore

        with predstore.StoreWriter("preds.pstore", mode="overwrite") as writer:
            for start in range(0, 1000, 100):
                logits = np.random.rand(100, 1000).astype(np.float32)
                writer.write(
                    {"logits": logits, "pred": logits.argmax(1)},
                    indices=np.arange(start, start + 100),
                    names=[f"case-{i}" for i in range(start, start + 100)],
                )
        store = predstore.open("preds.pstore")

    Each call to :meth:`write` takes a dict of per-batch values and the global
    dataset index of each row. The first batch fixes every key's dtype, shape
    and storage (Parquet for small values, sharded Zarr for large ones; see
    ``keys``). Rows are buffered and committed part by part: a part commits
    when its arrays fill a shard (``shard_bytes``), when its Parquet data
    reaches ``part_bytes``, every ``commit_interval`` seconds, and on close.

    The options (``mode``, ``keys``, the sizes, the codec, ...) are those of
    :class:`predstore.WriteOptions`, given by name or as one object; they are
    checked here, before anything is written. ``path`` is a directory or an
    object store URL (``s3://bucket/prefix``, ``gs://``, ``az://``), configured
    by the standard environment variables or ``storage_options`` (see the
    docs page "Stores on object storage").

    Each Zarr key's rows fill an inner chunk (``chunk_bytes``); full chunks
    are compressed on a small pool and appended to their shard file by an
    I/O thread (``background=True``, the default; inline otherwise), which
    also closes parts and saves the rank manifest, in that order. Memory
    holds one chunk per key and a few in flight, whatever the shard size. An
    error of that thread is raised by the next call, with its traceback.

    With ``world_size == 1``, :meth:`close` commits the store manifest. With
    several ranks, every rank writes with the same ``write_id`` and closes,
    then one process calls :func:`predstore.finalize`.

    Leaving the ``with`` block by an exception commits the rows written so
    far in the rank manifest but not in the store: ``predstore finalize`` or
    ``mode="resume"`` picks them up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: WriteOptions | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        write_id: str | None = None,
        expected: Mapping[int, int] | None = None,
        index_source: str | None = None,
        provenance: Mapping[str, Any] | None = None,
        filesystem: FileSystem | None = None,
        **option_values: Any,
    ) -> None:
        _check_rank(rank, world_size, write_id)
        self.options = resolve(options, option_values)
        self.path = os.fspath(path)
        self.fs = filesystem or filesystem_for(
            self.path,
            storage_options=self.options.storage_options,
            durable=self.options.durable,
        )
        if self.fs.is_local and os.path.isfile(self.fs.root):
            raise StoreExistsError(f"{self.path} is a file; a store is a directory")
        self.rank, self.world_size, self.mode = rank, world_size, self.options.mode
        self.write_id = write_id or layout.new_write_id()
        if self.fs.exists(layout.rank_manifest(self.write_id, rank)):
            raise StoreExistsError(
                f"{self.path}: rank {rank} of write {self.write_id} exists already; "
                "every write needs a new write_id"
            )
        self.plan = plan_write(self.fs, mode=self.mode, write_id=self.write_id, check=rank == 0)
        self._rules = self.options.rules
        self._expected: dict[int, int] = dict(expected or {})
        self._index_source = index_source
        self._provenance = {"host": socket.gethostname(), "pid": os.getpid(), **(provenance or {})}
        self._started_at = now()
        self._schema: Schema | None = None
        self._held: list[Batch] = []  # first batches, while a key's type is unknown
        self._held_bytes = 0
        self._held_keys: dict[str, KeySchema] = {}  # the schemas the held batches show
        self._parts: PartWriter | None = None
        self._arrays: dict[str, ArrayStream] = {}
        self._shard_rows = 0  # rows per shard of the fixed-shape arrays (0: there are none)
        self._part_starts: dict[str, int] = {}
        self._ragged_bytes = 0  # ragged payload since the last commit
        self._committed: list[PartEntry] = []
        self._last_commit = time.monotonic()
        self._closed = False
        self._jobs = OrderedJobs(
            background=self.options.background,
            owner=f"the writer of {self.path} (rank {rank})",
            on_error=self._note_io_error,
        )
        self._encoders = ThreadPoolExecutor(
            max(2, os.cpu_count() or 2), thread_name_prefix="predstore-encode"
        )
        self._in_flight = threading.Semaphore(2 * max(2, os.cpu_count() or 2) + 2)
        self.rows_skipped = 0
        self._lent = False  # whether the batch being written is lent (see write's release)
        self._rules_checked = not (self._rules.only or self._rules.specs)
        self._save("open")

    # -- writing ---------------------------------------------------------

    def write(
        self,
        outputs: Mapping[str, Any],
        indices: Any,
        *,
        names: Sequence[str | None] | None = None,
        dataloader_idx: int = 0,
        release: Callable[[], None] | None = None,
    ) -> None:
        """Add one batch: ``outputs`` holds per-batch values, ``indices`` each row's global index.

        Args:
            outputs: key to a batch of values (tensors, arrays, scalars, strings, lists,
                nested dicts), each with one row per sample.
            indices: each row's global dataset index.
            names: a name per row (or ``None`` for a row without one).
            dataloader_idx: the dataloader the rows belong to.
            release: without it, the values are the caller's again once ``write``
                returns (the writer copies what it keeps). With it, they are lent: the
                caller leaves them unchanged until the writer calls ``release()``, once it
                has written what it read from them (or dropped it after an error), and
                the writer encodes whole chunks of large arrays without copying them.

        Raises ``InvalidBatchError`` or ``SchemaError`` (naming the key and what
        was expected) before anything of the batch is stored; the writer stays
        usable and everything written before is kept.

        Example::

            import numpy as np
            import predstore

            with predstore.StoreWriter("scores.pstore") as writer:
                writer.write({"score": np.array([0.1, 0.9])}, indices=[10, 11], names=["a", "b"])
        """
        try:
            self._check_open()  # an error of the writer's I/O surfaces here, at the next batch
            self.check_rules(outputs)
            batch = normalize(
                outputs, indices, names=names, dataloader_idx=dataloader_idx, keep=self._rules.keep
            )
            batch = self._drop_committed(batch)
            if not len(batch):
                return
            self._lent = release is not None
            if self._parts is None:
                self._begin(batch)
            else:
                self._add(self._conform(batch))
        except OSError as e:
            self._note_io_error(e)
            raise
        finally:
            self._lent = False
            if release is not None:
                self._release_after_jobs(release)

    def _release_after_jobs(self, release: Callable[[], None]) -> None:
        """Call ``release`` once every job submitted so far has run: the chunks encoded from
        lent values are written by then (after an error, the jobs' cleanups call it)."""
        if self._closed:
            release()
        else:
            self._jobs.submit(release, cleanup=release)

    def _add(self, batch: Batch) -> None:
        while len(batch):
            head = batch.slice(0, self._room())
            batch = batch.slice(len(head), len(batch))
            self._append(head)
            if self._commit_due():
                self._commit_part()

    def _begin(self, batch: Batch) -> None:
        """Fix the schema from the first batches and start writing them.

        While a key has been ``None`` in every row so far and its type is not
        declared, the batches are held (copied) in memory, up to
        ``row_group_bytes``; past that, or when the writer commits, such a key
        is fixed as a nullable string, with a warning.
        """
        if self.plan.schema is not None:  # an append or a resume: the store's schema
            self._start_with([batch], dict(self.plan.schema.keys))
            return
        if self._held:
            _check_key_sets(list(self._held[0].columns), batch)
        revealed = self._infer(batch, self._held_keys)
        keys = {**self._held_keys, **revealed}
        if len(keys) < len(batch.columns) and (
            self._held_bytes + batch.nbytes <= self.options.row_group_bytes
        ):
            # What would fail when the schema is fixed fails now: this batch against every
            # known key, the held batches against the keys this batch reveals.
            for key, spec in keys.items():
                conform(key, spec, batch.columns[key])
            for one in self._held:
                for key, spec in revealed.items():
                    conform(key, spec, one.columns[key])
            self._held.append(batch.copy())
            self._held_bytes += batch.nbytes
            self._held_keys = keys
            return
        self._start_with([*self._held, batch], keys)

    def _start_with(self, held: list[Batch], keys: dict[str, KeySchema]) -> None:
        """Start the write with the schemas ``keys`` and add the ``held`` batches. Nothing is fixed
        by a start that fails before a row is buffered: the next batch is the first again."""
        schema = self.plan.schema
        if schema is None:
            unknown = [k for k in held[0].columns if k not in keys]
            if unknown:
                warnings.warn(
                    f"{self.path}: keys {unknown} were None in every row of the first "
                    f"{sum(map(len, held))} rows, so their type is unknown; they are stored as "
                    f"nullable strings. Declare their type, e.g. keys={{{unknown[0]!r}: "
                    "KeySpec(dtype='float32')}",
                    stacklevel=4,
                )
                nulls = KeySchema(dtypes.STRING, (), "parquet", nullable=True)
                keys = {**keys, **dict.fromkeys(unknown, nulls)}
            schema = Schema({k: keys[k] for k in held[0].columns})
        self._schema = schema
        try:
            conformed = [self._conform(b) for b in held]
            self._start(self._schema, conformed[0])
            for one in conformed:
                self._add(one)
        except BaseException:
            if self._committed or (self._parts is not None and self._parts.rows):
                raise  # rows are buffered or committed: the schema stays
            self._unstart()
            raise
        self._held, self._held_bytes, self._held_keys = [], 0, {}

    def _unstart(self) -> None:
        """Forget a start that failed before any row was buffered."""
        for stream in self._arrays.values():
            with contextlib.suppress(Exception):
                stream.abort()
        self._parts, self._arrays, self._schema, self._shard_rows = None, {}, None, 0

    def validate(
        self,
        outputs: Mapping[str, Any],
        indices: Any,
        *,
        names: Sequence[str | None] | None = None,
        dataloader_idx: int = 0,
    ) -> None:
        """Raise what :meth:`write` would raise for this batch against the store's known schema.

        Nothing is stored. Appends and resumes know their schema before the
        first batch: checking that batch at once fails a job before it
        predicts more.

        Args:
            outputs: the batch's values by key, as :meth:`write` takes them.
            indices: each row's global dataset index.
            names: each row's name, if the store keeps names.
            dataloader_idx: which dataloader the batch came from.

        Example::

            import numpy as np
            import predstore

            writer = predstore.StoreWriter("preds.pstore", mode="append")
            try:
                writer.validate({"pred": np.array(["cat"])}, indices=[8])  # pred holds integers
            except predstore.SchemaError as e:
                print(e)
            writer.close()
        """
        batch = normalize(
            outputs, indices, names=names, dataloader_idx=dataloader_idx, keep=self._rules.keep
        )
        schema = self._schema or self.plan.schema
        if schema is not None:
            for key, column in batch.columns.items():
                if key in schema.keys:
                    conform(key, schema.keys[key], column)
            _check_key_sets(list(schema.keys), batch)

    def check_rules(self, outputs: Mapping[str, Any]) -> None:
        """Warn, once (on rank 0), about ``keys=`` rules that match no key of the first batch.

        A rule that matches nothing is most often a typo (``"logit"`` for
        ``"logits"``), which would otherwise store the key as ``auto`` decides.

        Args:
            outputs: the first batch's values by key.

        Example::

            import numpy as np
            import predstore

            keys = {"logit": predstore.KeySpec(storage="zarr")}  # a typo for "logits"
            with predstore.StoreWriter("rules.pstore", keys=keys) as writer:
                writer.check_rules({"logits": np.zeros((2, 10))})  # logs a warning naming it
        """
        if self._rules_checked:
            return
        self._rules_checked = True
        unmatched = self._rules.unmatched(list(flatten(outputs)))
        if unmatched and self.rank == 0:
            warnings.warn(
                f"{self.path}: the keys= rules {unmatched} match no key of the first batch "
                f"(its keys: {sorted(flatten(outputs))}); check their spelling",
                UserWarning,
                stacklevel=3,
            )

    def set_expected(self, length: int, dataloader_idx: int = 0) -> None:
        """Record how many samples ``dataloader_idx`` has, for the coverage figures.

        Args:
            length: the number of samples of the dataloader.
            dataloader_idx: which dataloader.

        Example::

            import numpy as np
            import predstore

            with predstore.StoreWriter("half.pstore") as writer:
                writer.set_expected(10)
                writer.write({"pred": np.zeros(5)}, indices=np.arange(5))
            print(predstore.open("half.pstore").coverage[0].missing)  # 5
        """
        self._expected[int(dataloader_idx)] = int(length)

    @property
    def expected(self) -> dict[int, int]:
        """The dataset length of each dataloader, where known.

        Example::

            import predstore

            with predstore.StoreWriter("empty.pstore") as writer:
                writer.set_expected(100, dataloader_idx=1)
                print(writer.expected)  # {1: 100}
        """
        return dict(self._expected)

    def set_index_source(self, source: str | None) -> None:
        """Record where the rows' indices come from (``index_key``, ``batch_indices``, ...).

        The store manifest keeps it, so a reader can tell true dataset indices
        from positional ones.

        Args:
            source: a short description, or ``None`` when unknown.

        Example::

            import numpy as np
            import predstore

            with predstore.StoreWriter("ids.pstore") as writer:
                writer.set_index_source("index_key=sample_id")
                writer.write({"pred": np.zeros(2)}, indices=[3, 4])
        """
        self._index_source = source

    def commit(self) -> None:
        """Commit the rows buffered so far as a part, and wait until the rank manifest records it.

        Example::

            import numpy as np
            import predstore

            writer = predstore.StoreWriter("steps.pstore")
            writer.write({"pred": np.zeros(4)}, indices=np.arange(4))
            writer.commit()  # survives a crash from here on: `predstore finalize` recovers it
            print(writer.rows_committed)  # 4
            writer.close()
        """
        self._check_open()
        self._commit_part()
        self._jobs.drain()

    def close(self) -> StoreManifest | None:
        """Commit everything; with ``world_size == 1`` also commit the store manifest and return it.

        Example::

            import numpy as np
            import predstore

            writer = predstore.StoreWriter("closed.pstore")
            writer.write({"pred": np.zeros(3)}, indices=np.arange(3))
            manifest = writer.close()
            print(manifest.rows)  # 3
        """
        if self._closed:
            return None
        self._closed = True
        try:
            self._commit_part()
            self._jobs.drain()
        except BaseException:
            self._stop()
            with contextlib.suppress(Exception):
                self._save("failed")
            raise
        self._stop()
        self._save("closed")
        return self.commit_store() if self.world_size == 1 else None

    def commit_store(self) -> StoreManifest:
        """Commit the store manifest from the rank manifests of this write and those it resumes.

        With several ranks, one process calls it once every rank has closed.

        Example::

            import numpy as np
            import predstore
            from predstore.format.layout import new_write_id

            write_id = new_write_id()  # one id, shared by every rank of the write
            writers = [
                predstore.StoreWriter("ranks.pstore", rank=r, world_size=2, write_id=write_id)
                for r in range(2)
            ]
            for rank, writer in enumerate(writers):
                writer.write({"pred": np.zeros(2)}, indices=[rank, rank + 2])
                writer.close()  # commits this rank; with two ranks, not the store
            print(writers[0].commit_store().rows)  # 4
        """
        return finalize(
            self.fs, write_ids=[*self.plan.resumes, self.write_id], retention=self.options.retention
        )

    def fail(self) -> None:
        """Commit the rows buffered so far and mark this rank failed; the store manifest is untouched.

        A rank that committed no row removes its files instead: a write
        without rows blocks nothing and leaves nothing behind.

        Best effort: it runs after something went wrong (a full disk, say), so
        what it cannot do is logged, not raised; what was committed stays.

        Example::

            import numpy as np
            import predstore

            writer = predstore.StoreWriter("interrupted.pstore")
            writer.write({"pred": np.zeros(3)}, indices=np.arange(3))
            writer.fail()  # as leaving a ``with`` block by an exception does
            print(predstore.finalize("interrupted.pstore").rows)  # 3: nothing committed is lost
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._commit_part()
            self._jobs.drain()
        except Exception:
            _log.warning(
                "%s (rank %d): the rows buffered since the last commit are lost",
                self.path,
                self.rank,
                exc_info=True,
            )
        finally:
            self._stop()
            if self._parts is not None:
                self._parts.abort()
            for stream in self._arrays.values():
                stream.abort()
            try:
                if self._committed:
                    self._save("failed")
                else:
                    self._discard()
            except Exception:
                _log.warning(
                    "%s (rank %d): could not mark the rank failed",
                    self.path,
                    self.rank,
                    exc_info=True,
                )

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.fail()

    @property
    def schema(self) -> Schema | None:
        """The schema fixed by the first batch (``None`` before it).

        Example::

            import numpy as np
            import predstore

            with predstore.StoreWriter("typed.pstore") as writer:
                writer.write({"emb": np.zeros((2, 8), np.float16)}, indices=[0, 1])
                print(writer.schema.keys["emb"].describe())
        """
        return self._schema

    @property
    def rows_committed(self) -> int:
        """How many rows this rank's manifest has committed so far.

        Example::

            import numpy as np
            import predstore

            with predstore.StoreWriter("count.pstore") as writer:
                writer.write({"pred": np.zeros(5)}, indices=np.arange(5))
                print(writer.rows_committed)  # 0 until a part commits
        """
        return sum(p.rows for p in self._committed)

    # -- internals -------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidBatchError(f"the writer of {self.path} (rank {self.rank}) is closed")
        self._jobs.check()  # an OSError carries its note (_note_io_error)

    def _drop_committed(self, batch: Batch) -> Batch:
        """Resume skips rows that are committed already; append refuses them."""
        known = self.plan.committed
        if known is None or not len(batch):
            return batch
        seen = known.contains(batch.dataloader_idx, batch.indices)
        if not seen.any():
            return batch
        if self.mode == "append":
            sample = batch.indices[seen][:5].tolist()
            raise InvalidBatchError(
                f"append: indices {sample} of dataloader {batch.dataloader_idx} are in the store "
                f"{self.path} already ({int(seen.sum())} of this batch); an appended index must be new"
            )
        self.rows_skipped += int(seen.sum())
        return batch.take(~seen)

    def _infer(self, batch: Batch, known: dict[str, KeySchema]) -> dict[str, KeySchema]:
        """The schemas ``batch`` shows of keys not ``known`` yet (a key that is ``None`` in every
        row and not declared shows nothing)."""
        found = {}
        for key, column in batch.columns.items():
            if key not in known:
                spec = infer(
                    key,
                    column,
                    self._rules.spec(key),
                    self.options.parquet_max_bytes,
                    self.options.parquet_max_elements,
                )
                if spec is not None:
                    found[key] = spec
        return found

    def _conform(self, batch: Batch) -> Batch:
        assert self._schema is not None
        keys = self._schema.keys
        _check_key_sets(list(keys), batch)
        columns = {k: conform(k, keys[k], c) for k, c in batch.columns.items()}
        self._note_nulls(batch, columns)
        return Batch(batch.indices, batch.names, batch.dataloader_idx, columns)

    def _note_nulls(self, batch: Batch, columns: dict[str, Any]) -> None:
        assert self._schema is not None
        keys = dict(self._schema.keys)
        for key, column in columns.items():
            spec = keys[key]
            has_nulls = column.mask is not None or (
                column.kind == "string" and any(v is None for v in column.values)
            )
            if has_nulls and not spec.nullable:
                keys[key] = msgspec.structs.replace(spec, nullable=True)
        names = self._schema.names or (
            batch.names is not None and any(n is not None for n in batch.names)
        )
        self._schema = Schema(keys, names=names)

    def _start(self, schema: Schema, first: Batch) -> None:
        """Create the part writer, and an array stream per Zarr key, for ``schema``."""
        self._parts = PartWriter(
            self.fs,
            write_id=self.write_id,
            rank=self.rank,
            schema=schema,
            row_group_bytes=self.options.row_group_bytes,
            codecs={
                key: codecs.parquet(*self._codec_of(key))
                for key, spec in schema.keys.items()
                if spec.storage == "parquet"
            },
        )
        zarr_keys = {k: s for k, s in schema.keys.items() if s.storage == "zarr"}
        fixed = [s.row_bytes for s in zarr_keys.values() if not s.ragged]
        # Every fixed-shape array shares one shard length, so a part that fills
        # the widest key's shard fills every shard at once.
        self._shard_rows = pow2_floor(self.options.shard_bytes / max(fixed)) if fixed else 0
        for key, spec in zarr_keys.items():
            self._arrays[key] = self._array_stream(key, spec, first.columns[key])

    def _array_stream(self, key: str, spec: KeySchema, first: Column) -> ArrayStream:
        itemsize = dtypes.get(spec.dtype).itemsize
        # One position along the first axis: a row, or one element of a ragged key's flat array.
        unit = itemsize if spec.ragged else max(1, spec.row_bytes)
        shard_len = pow2_floor(self.options.shard_bytes / unit) if spec.ragged else self._shard_rows
        codec, level = self._codec_of(key)
        return ArrayStream(
            self.fs,
            path=layout.array(self.write_id, self.rank, key),
            key=key,
            schema=spec,
            write_id=self.write_id,
            rank=self.rank,
            shard_len=shard_len,
            chunk_len=min(shard_len, self.options.chunk_rows(unit)),
            compressors=codecs.compressors(codec, level, itemsize, sample=_sample(first)),
            encoders=self._encoders,
            jobs=self._jobs,
            in_flight=self._in_flight,
        )

    def _codec_of(self, key: str) -> tuple[str, int | None]:
        """The codec and level of ``key``: its ``keys=`` rule's, else the store's."""
        user = self._rules.spec(key)
        level = user.level if user.level is not None else self.options.codec_level
        return user.codec or self.options.codec, level

    def _room(self) -> int:
        """Rows the open part can take before its shards are full."""
        assert self._parts is not None
        return self._shard_rows - self._parts.rows if self._shard_rows else 1 << 62

    def _append(self, batch: Batch) -> None:
        assert self._parts is not None
        # Converting first: whatever fails here fails before any buffer changed.
        columns = self._parts.columns(batch)
        if not self._parts.rows:
            self._part_starts = {
                k: a.position for k, a in self._arrays.items() if not a.schema.ragged
            }
        for key, stream in self._arrays.items():
            column = batch.columns[key]
            if not stream.schema.ragged:
                stream.append(column.values, lent=self._lent)
                continue
            rows = column.rows()
            sizes = np.array([r.size for r in rows], dtype=np.int64)
            start = stream.append(np.concatenate([np.ravel(r) for r in rows]))
            offsets = start + np.concatenate(([0], np.cumsum(sizes)[:-1]))
            shapes = np.array([r.shape for r in rows], dtype=np.int64).reshape(len(rows), -1)
            columns[offset_column(key)] = pa.array(offsets, pa.int64())
            columns[shape_column(key)] = pa.FixedSizeListArray.from_arrays(
                pa.array(shapes.reshape(-1), pa.int64()), shapes.shape[1]
            )
            self._ragged_bytes += int(sizes.sum()) * stream.dtype.itemsize
        self._parts.append(batch, columns)

    def _commit_due(self) -> bool:
        assert self._parts is not None
        if self._room() == 0:
            return True
        pending = self._parts.open_bytes + self._ragged_bytes
        if pending >= self.options.part_bytes:
            return True
        interval = self.options.commit_interval
        return interval is not None and time.monotonic() - self._last_commit >= interval

    def _commit_part(self) -> None:
        """End the open part: its arrays' shards and the part file are closed, then the rank
        manifest records them, all on the writer's I/O thread, in that order."""
        self._last_commit = time.monotonic()
        if self._parts is None and self._held:
            self._start_with(list(self._held), self._held_keys)
        if self._parts is None or not self._parts.rows:
            return
        for stream in self._arrays.values():
            stream.seal()
        part = self._parts.seal(self._part_starts)
        assert part is not None
        self._ragged_bytes = 0
        self._jobs.submit(
            self._finish_part, part, self._schema, dict(self._expected), cleanup=part.abort
        )

    def _finish_part(
        self, part: SealedPart, schema: Schema | None, expected: dict[int, int]
    ) -> None:
        """On the I/O thread, after the part's shards: the part, then the rank manifest that commits it."""
        try:
            self._committed.append(part.finish())
            self._save("open", schema, expected)
        except OSError as e:
            self._note_io_error(e, part.path)
            raise

    def _discard(self) -> None:
        """Remove this rank's files: it committed no row, so it must block and leave nothing."""
        self.fs.delete_tree(layout.rank_manifest(self.write_id, self.rank))
        self.fs.delete_tree(layout.array(self.write_id, self.rank, "x").rsplit("/", 1)[0])
        if self.world_size == 1:
            self.fs.delete_tree(layout.write_dir(self.write_id))

    def _note_io_error(self, error: BaseException, part: str | None = None) -> None:
        """Say once, on an OSError (disk full, permissions, a lost mount), what it means for the data."""
        if not isinstance(error, OSError) or any(
            n.startswith("predstore:") for n in getattr(error, "__notes__", ())
        ):
            return
        if part is None:
            part = self._parts.path if self._parts is not None else "its first part"
        error.add_note(
            f"predstore: writing {part} of {self.path} (rank {self.rank}) failed; its rows are "
            f"not committed, the {self.rows_committed} rows this rank committed before it are "
            "intact (predstore finalize, or mode='resume', picks them up)"
        )

    def _stop(self) -> None:
        """Let the I/O thread finish what is queued, and stop the threads."""
        self._jobs.close()
        self._encoders.shutdown(wait=True)

    def _save(
        self, state: RankState, schema: Schema | None = None, expected: dict[int, int] | None = None
    ) -> None:
        arrays: list[ArrayEntry] = [w.entry() for w in self._arrays.values()]
        save_rank_manifest(
            self.fs,
            RankManifest(
                write_id=self.write_id,
                rank=self.rank,
                world_size=self.world_size,
                mode=self.mode,
                base_generation=self.plan.base_generation,
                resumes=self.plan.resumes,
                state=state,
                started_at=self._started_at,
                updated_at=now(),
                schema=schema or self._schema,
                parts=list(self._committed),
                arrays=arrays,
                expected=self._expected if expected is None else expected,
                index_source=self._index_source,
                provenance=self._provenance,
            ),
        )


def _check_key_sets(keys: list[str], batch: Batch) -> None:
    extra = [k for k in batch.columns if k not in keys]
    missing = [k for k in keys if k not in batch.columns]
    if extra or missing:
        raise SchemaError(
            f"the batch's keys differ from the store's: missing {missing or 'none'}, "
            f"new {extra or 'none'}; every batch has the keys {keys} (a key without a value "
            "in a batch is returned as None there, a null)"
        )


def _sample(column: Column, limit: int = 1 << 20) -> bytes:
    """Up to ``limit`` bytes of a column's values, for the codec to judge them by."""
    rows = column.rows() if column.kind == "ragged" else [column.values]
    data = b""
    for row in rows:
        data += np.ascontiguousarray(row).tobytes()[: limit - len(data)]
        if len(data) >= limit:
            break
    return data


def _check_rank(rank: int, world_size: int, write_id: str | None) -> None:
    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if world_size > 1 and write_id is None:
        raise ConfigError(
            "with world_size > 1 every rank must pass the same write_id "
            "(predstore.format.layout.new_write_id() makes one)"
        )
    if write_id is not None:
        try:
            layout.check_write_id(write_id)
        except ValueError as e:
            raise ConfigError(str(e)) from None
