"""PredictionWriter: the Lightning callback that writes ``trainer.predict`` outputs to a store."""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from predstore.errors import ConfigError, CoverageError, PredstoreError, StoreNotCommittedError
from predstore.format.fs import filesystem_for
from predstore.format.manifest import StoreManifest
from predstore.format.provenance import describe_dataset
from predstore.lightning.host_buffers import HostBuffers
from predstore.lightning.indices import IndexSource, batch_rows
from predstore.write.background import BackgroundWriter
from predstore.write.options import MiB, WriteOptions, check_names, check_options
from predstore.write.ranks import abandon_write, new_write_id, write_is_visible
from predstore.write.store_writer import StoreWriter

LARGE_RUN = 10_000
"""From this many expected samples, keeping every output in memory is worth a warning."""


class PredictionWriter(BasePredictionWriter):
    """Writes every rank's ``predict_step`` outputs to a predstore store, committed atomically.

    Example::

        import lightning as L
        import torch
        from torch.utils.data import DataLoader, TensorDataset

        import predstore

        class Classifier(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Linear(4, 3)

            def predict_step(self, batch, batch_idx):
                (x,) = batch
                logits = self.net(x)
                return {"logits": logits, "pred": logits.argmax(1)}

        loader = DataLoader(TensorDataset(torch.randn(10, 4)), batch_size=4)
        writer = predstore.PredictionWriter("predict.pstore")
        trainer = L.Trainer(accelerator="cpu", callbacks=[writer], logger=False, enable_progress_bar=False)
        trainer.predict(Classifier(), dataloaders=loader, return_predictions=False)
        store = predstore.open("predict.pstore")  # 10 rows: logits (3,) and pred, by dataset index

    ``predict_step`` returns a dict of tensors, lists and scalars (a bare
    tensor is stored as the key ``pred``); each row is keyed by its global
    dataset index (``index_key``, else the indices Lightning tracks mapped
    through any ``Subset`` chain, else a positional counter, with a warning)
    and its dataloader. ``name_key`` names an output that holds a name per
    row (strings, or integers stored as their decimal text).

    Conversion, compression and file I/O run on background threads; the
    predict loop blocks only when more than ``max_pending_bytes`` of outputs
    wait to be written. When predict ends, every rank commits its rank
    manifest and rank 0 commits the store, with coverage per dataloader:
    duplicated or missing indices raise a warning that says why, or a
    ``CoverageError`` with ``strict=True`` (after the commit, so nothing is
    lost). If predict fails, what was written is committed to the rank
    manifests: ``predstore finalize`` or ``mode="resume"`` picks it up.

    Every option of :class:`predstore.WriteOptions` (``mode``, ``keys``,
    ``chunk_bytes``, ``codec``, ...) is an argument of the same name, or pass
    the options object itself; all are checked here, when the callback is built.

    Args:
        path: the store's directory.
        options: the write options as one object; options given by name override it.
        name_key: the output that holds each row's name.
        index_key: the output that holds each row's dataset index.
        strict: raise ``CoverageError`` (after the commit) on duplicated or missing indices.
        max_pending_bytes: outputs that may wait for the writer before predict blocks.
        option_values: any option of :class:`predstore.WriteOptions`, by name.
    """

    def __init__(
        self,
        path: str,
        options: WriteOptions | None = None,
        *,
        name_key: str | None = None,
        index_key: str | None = None,
        strict: bool = False,
        max_pending_bytes: int = 64 * MiB,
        **option_values: Any,
    ) -> None:
        super().__init__(write_interval="batch")
        self.path = os.fspath(path)
        # Spelled out (not resolve()) so that LightningCLI finds every option's name and type.
        check_options(options)
        check_names(option_values)
        if options is None:
            options = WriteOptions(**option_values)
        self.options = options.replace(**option_values) if option_values else options
        filesystem_for(
            self.path, storage_options=self.options.storage_options
        )  # fails now on a bad URL
        for name, value in (("name_key", name_key), ("index_key", index_key)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(
                    f"{name} must be the name of an output (a str) or None, got {value!r}"
                )
        if not isinstance(strict, bool):
            raise ConfigError(f"strict must be True or False, got {strict!r}")
        if (
            isinstance(max_pending_bytes, bool)
            or not isinstance(max_pending_bytes, int)
            or max_pending_bytes < 1
        ):
            raise ConfigError(
                f"max_pending_bytes must be a positive int, got {max_pending_bytes!r}"
            )
        self.name_key, self.index_key = name_key, index_key
        self.mode, self.strict = self.options.mode, strict
        self.max_pending_bytes = max_pending_bytes
        self.manifest: StoreManifest | None = None
        """The store manifest committed by the last ``trainer.predict`` (on every rank)."""
        self._writer: BackgroundWriter | None = None
        self._buffers: HostBuffers | None = None
        self._sources: dict[int, IndexSource] = {}
        self._warned: set[str] = set()
        self._first_batch = True

    # -- predict starts: agree on one write -------------------------------------

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank = trainer.global_rank
        self.manifest, self._sources, self._warned = None, {}, set()
        writer, failure = None, None
        if rank == 0:
            try:
                writer = self._store_writer(trainer, pl_module, new_write_id())
            except (PredstoreError, ValueError, OSError) as e:
                failure = e
        write_id, message = trainer.strategy.broadcast(
            (
                writer.write_id if writer else None,
                None if failure is None else f"{type(failure).__name__}: {failure}",
            ),
            src=0,
        )
        if failure is not None:
            raise failure
        if message is not None:
            raise PredstoreError(f"rank 0 could not start the write to {self.path}: {message}")
        assert write_id is not None
        visible = rank == 0 or write_is_visible(self.path, write_id, self.options.storage_options)
        if not trainer.strategy.reduce_boolean_decision(visible, all=True):
            self._abandon(writer, write_id, rank)
            raise PredstoreError(
                f"ranks do not share storage: rank 0 started write {write_id} in {self.path}, "
                "but another rank cannot see it there; give every rank a path on a shared "
                "file system (or an object store), not a node-local disk"
            )
        if writer is None:
            writer = self._store_writer(trainer, pl_module, write_id)
        self._expect(trainer, writer)
        self._writer = BackgroundWriter(writer, max_pending_bytes=self.max_pending_bytes)
        self._buffers = HostBuffers(keep_bytes=self.max_pending_bytes)
        self._first_batch = True
        self._warn_if_lightning_keeps_everything(trainer, writer)

    def _store_writer(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, write_id: str
    ) -> StoreWriter:
        return StoreWriter(
            self.path,
            self.options,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            write_id=write_id,
            provenance=_provenance(trainer, pl_module),
        )

    def _abandon(self, writer: StoreWriter | None, write_id: str, rank: int) -> None:
        """Remove a write that never started predicting (it committed nothing)."""
        if writer is not None:
            writer.fail()
        if rank == 0:
            abandon_write(self.path, write_id, self.options.storage_options)

    def _expect(self, trainer: pl.Trainer, writer: StoreWriter) -> None:
        for dl, loader in enumerate(_predict_loaders(trainer)):
            dataset = getattr(loader, "dataset", None)
            source = IndexSource(
                dataset,
                index_key=self.index_key,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
            )
            self._sources[dl] = source
            with contextlib.suppress(TypeError, NotImplementedError):
                writer.set_expected(len(dataset), dl)  # type: ignore[arg-type]

    def _warn_if_lightning_keeps_everything(self, trainer: pl.Trainer, writer: StoreWriter) -> None:
        keeps = getattr(trainer.predict_loop, "return_predictions", False)
        expected = sum(writer.expected.values())
        unknown = len(writer.expected) < len(self._sources)
        if keeps and trainer.global_rank == 0 and (expected >= LARGE_RUN or unknown):
            warnings.warn(
                "PredictionWriter: trainer.predict keeps every output in memory as well "
                f"(about {expected:,} samples here), as Lightning returns them; the store has them "
                "already. Pass return_predictions=False to trainer.predict to keep memory flat.",
                stacklevel=2,
            )

    # -- every batch: hand it to the background writer ---------------------------

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        writer = self._writer
        if writer is None:
            raise PredstoreError("PredictionWriter received a batch before predict started")
        writer.check()  # an error of the writer thread surfaces here, at the next batch
        outputs = _as_outputs(prediction)
        rows = batch_rows(outputs)
        for option, key, holds in (
            ("index_key", self.index_key, "dataset index"),
            ("name_key", self.name_key, "name"),
        ):
            if key is not None and key not in outputs:
                raise ConfigError(
                    f"{option}={key!r}, but predict_step returned the keys {sorted(outputs)}; "
                    f"return each sample's {holds} under that key"
                )
        source = self._sources.setdefault(
            dataloader_idx,
            IndexSource(
                None,
                index_key=self.index_key,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
            ),
        )
        indices = source.indices(outputs, batch_indices, rows if rows is not None else 0)
        self._warn_once_positional(source, dataloader_idx)
        names = _names(outputs.pop(self.name_key, None), self.name_key) if self.name_key else None
        if self._first_batch:
            writer.check_rules(outputs)  # here, on the predict loop's thread
        if self._first_batch and writer.knows_schema:
            # An append or a resume knows its schema: a batch that does not fit fails now.
            writer.validate(outputs, indices, names=names, dataloader_idx=dataloader_idx)
        self._first_batch = False
        assert self._buffers is not None
        host = self._buffers.copy(outputs)
        writer.set_index_source(_source_summary(self._sources))
        writer.submit(
            host.outputs,
            np.array(indices),  # a copy: an index_key tensor may be refilled too
            names=names,
            dataloader_idx=dataloader_idx,
            nbytes=host.nbytes,
            prepare=host.ready,
            done=host.release,
        )

    def _warn_once_positional(self, source: IndexSource, dataloader_idx: int) -> None:
        if source.kind == "positional" and "positional" not in self._warned:
            self._warned.add("positional")
            warnings.warn(
                f"PredictionWriter: dataloader {dataloader_idx} gives no sample indices (an "
                "IterableDataset, or a batch sampler Lightning cannot track), so rows are numbered "
                "by position, rank + k * world_size; that is the dataset index only if every rank "
                "sees the samples interleaved in that order. Return each sample's index from "
                "predict_step and pass index_key=... to store true indices.",
                stacklevel=2,
            )

    # -- predict ends: commit ---------------------------------------------------------------

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer, self._writer = self._writer, None
        self._buffers = None  # the pool's memory goes with the write
        if writer is None:
            return
        manifest = writer.close()  # commits this rank; with one rank, the store too
        trainer.strategy.barrier()
        error = None
        if trainer.global_rank == 0 and manifest is None:
            try:
                manifest = writer.commit_store()
            except PredstoreError as e:
                error = e
        manifest, message = trainer.strategy.broadcast(
            (manifest, None if error is None else f"{type(error).__name__}: {error}"), src=0
        )
        if error is not None:
            raise error
        if message is not None:
            raise PredstoreError(f"rank 0 could not commit the store {self.path}: {message}")
        assert manifest is not None
        self.manifest = manifest
        if trainer.global_rank == 0:
            self._register(trainer, manifest)
        self._report_coverage(manifest, trainer.global_rank)

    def _register(self, trainer: pl.Trainer, manifest: StoreManifest) -> None:
        """Tell a run registry in the same trainer which store this run wrote."""
        for logger in trainer.loggers:
            register = getattr(logger, "register_store", None)
            if callable(register):
                register(
                    self.path,
                    rows=manifest.rows,
                    committed_at=manifest.committed_at,
                    write_id=manifest.writes[-1].write_id,
                )

    def _report_coverage(self, manifest: StoreManifest, rank: int) -> None:
        problems = [
            f"dataloader {dl}: {c.duplicates} duplicated indices (e.g. {c.duplicate_sample[:5]}), "
            f"{c.missing or 0} missing (e.g. {c.missing_sample[:5]}) of {c.expected} expected"
            for dl, c in sorted(manifest.coverage.items())
            if c.duplicates or c.missing
        ]
        if not problems:
            return
        message = (
            f"PredictionWriter: the store {self.path} was committed, but its indices are not "
            f"covered exactly once: {'; '.join(problems)}. Readers see one row per index (the "
            "first committed). Likely cause: shuffle=True in a distributed predict dataloader "
            "(each rank draws its own permutation, so some samples are predicted twice and "
            "others never) or a custom sampler; predict with shuffle=False."
        )
        if self.strict:
            raise CoverageError(message)
        if rank == 0:
            warnings.warn(message, stacklevel=2)

    # -- predict fails: keep what was written ------------------------------------------------

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        writer, self._writer = self._writer, None
        self._buffers = None  # the pool's memory goes with the write
        if writer is not None:
            writer.fail()  # best effort, never raises: the original exception is what the user sees

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._writer is not None:
            self.on_exception(trainer, pl_module, StoreNotCommittedError("predict did not end"))


def _predict_loaders(trainer: pl.Trainer) -> list[Any]:
    loaders = trainer.predict_dataloaders
    if loaders is None:
        return []
    return list(loaders) if isinstance(loaders, list | tuple) else [loaders]


def _as_outputs(prediction: Any) -> dict[str, Any]:
    if isinstance(prediction, torch.Tensor):
        return {"pred": prediction}
    if isinstance(prediction, dict):
        return dict(prediction)  # a copy: Lightning may keep the original for return_predictions
    raise PredstoreError(
        f"predict_step returned a {type(prediction).__name__}; PredictionWriter stores a dict of "
        "tensors, lists and scalars, or a single tensor (stored as 'pred')"
    )


def _names(value: Any, key: str) -> list[str | None]:
    """Names from the ``name_key`` output: strings, or integers turned into their decimal text."""
    if value is None:
        raise PredstoreError(f"name_key={key!r}, but predict_step returned no value under that key")
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    elif isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    if isinstance(value, list | tuple) and set(map(type, value)) <= {str, type(None)}:
        return list(value)  # the common case, in one pass: checking item by item costs more
    names = []
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, torch.Tensor):
            item = item.item()
        if isinstance(item, bool) or not isinstance(item, str | int | np.integer | None):
            raise PredstoreError(
                f"name_key={key!r}: names are strings or integers, got {item!r} ({type(item).__name__})"
            )
        names.append(item if item is None or isinstance(item, str) else str(int(item)))
    return names


def _source_summary(sources: dict[int, IndexSource]) -> str | None:
    kinds = sorted({s.kind for s in sources.values() if s.kind})
    return ",".join(kinds) if kinds else None


def _provenance(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    cls = type(pl_module)
    datasets = {
        str(dl): describe_dataset(getattr(loader, "dataset", None))
        for dl, loader in enumerate(_predict_loaders(trainer))
    }
    return {
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "datasets": {dl: d for dl, d in datasets.items() if d is not None},
        "checkpoint": trainer.ckpt_path,
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "strategy": type(trainer.strategy).__name__,
        "precision": str(trainer.precision),
        "writer": "PredictionWriter",
    }
