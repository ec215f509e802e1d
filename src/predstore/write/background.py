"""BackgroundWriter: a StoreWriter fed from a queue, so the producing loop never waits on I/O.

The caller hands over each batch and returns at once; one thread turns
batches into columns and buffers them, and the StoreWriter's own commit
thread compresses and writes. The queue is bounded by bytes: when the
batches handed over but not yet written exceed ``max_pending_bytes``, the
caller blocks until they drain (backpressure), so memory stays flat however
fast the loop runs. An error on the thread is raised to the caller at its
next call, with its original traceback; batches handed over before it were
written and committed by the time :meth:`fail` or :meth:`close` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from predstore.errors import ConfigError
from predstore.format.manifest import StoreManifest
from predstore.write.jobs import OrderedJobs
from predstore.write.store_writer import StoreWriter


class BackgroundWriter:
    """Runs :meth:`StoreWriter.write` on a thread of its own, behind a queue bounded by bytes.

    Example::

        import numpy as np
        import predstore
        from predstore.write.background import BackgroundWriter

        writer = BackgroundWriter(predstore.StoreWriter("preds.pstore", mode="overwrite"))
        for start in range(0, 1000, 100):
            writer.submit({"score": np.random.rand(100)}, np.arange(start, start + 100), nbytes=800)
        writer.close()
    """

    def __init__(self, writer: StoreWriter, *, max_pending_bytes: int = 64 << 20) -> None:
        if max_pending_bytes < 1:
            raise ConfigError(f"max_pending_bytes must be positive, got {max_pending_bytes}")
        self.writer = writer
        self.max_pending_bytes = max_pending_bytes
        self._pending = 0
        self._space = threading.Condition()
        self._jobs = OrderedJobs(
            background=True,
            name="predstore-writer",
            owner=f"the background writer of {writer.path}",
        )

    def submit(
        self,
        outputs: Mapping[str, Any],
        indices: Any,
        *,
        names: Sequence[str | None] | None = None,
        dataloader_idx: int = 0,
        nbytes: int = 0,
        prepare: Callable[[], None] | None = None,
        done: Callable[[], None] | None = None,
    ) -> None:
        """Queue one batch; block while more than ``max_pending_bytes`` wait to be written.

        ``prepare`` runs on the writer thread before the batch is read (for
        example, waiting for an asynchronous device-to-host copy to finish);
        ``done`` runs once the writer no longer reads the batch's values
        (written, or dropped after an error): their memory may then be
        reused. Until then the values must not change: the writer encodes
        whole chunks of large arrays where they are, without copying them.
        """
        self.check()
        with self._space:
            # A batch larger than the whole budget still goes through, alone.
            while (
                self._pending
                and self._pending + nbytes > self.max_pending_bytes
                and self._jobs.error is None
            ):
                self._space.wait()
            self._pending += nbytes
        self.check()
        self._jobs.submit(
            self._write,
            outputs,
            indices,
            names,
            dataloader_idx,
            nbytes,
            prepare,
            done,
            cleanup=lambda: self._release(nbytes, done),  # after an error, batches are dropped
        )

    def check(self) -> None:
        """Raise the error the thread met, once, with its original traceback; later calls say it stopped."""
        self._jobs.check()

    def drain(self) -> None:
        """Wait until every batch handed over so far is written (or dropped after an error)."""
        self._jobs.wait()

    def close(self) -> StoreManifest | None:
        """Write everything queued, then close the StoreWriter (see :meth:`StoreWriter.close`)."""
        self._jobs.close()
        if self._jobs.error is not None:
            self.writer.fail()  # keep what was written before the error, then report it
            self.check()
        return self.writer.close()

    def fail(self) -> None:
        """Write what was queued if possible, then commit it and mark the rank failed (no store commit).

        Best effort, like :meth:`StoreWriter.fail`: it never raises.
        """
        self._jobs.close()
        self.writer.fail()

    def commit_store(self) -> StoreManifest:
        """Commit the store manifest (see :meth:`StoreWriter.commit_store`)."""
        return self.writer.commit_store()

    def validate(
        self,
        outputs: Mapping[str, Any],
        indices: Any,
        *,
        names: Sequence[str | None] | None = None,
        dataloader_idx: int = 0,
    ) -> None:
        """Check a batch against the known schema on the caller's thread (see :meth:`StoreWriter.validate`)."""
        self.writer.validate(outputs, indices, names=names, dataloader_idx=dataloader_idx)

    def check_rules(self, outputs: Mapping[str, Any]) -> None:
        """Warn about ``keys=`` rules that match no key (see :meth:`StoreWriter.check_rules`)."""
        self.writer.check_rules(outputs)

    def set_index_source(self, source: str | None) -> None:
        """Record where the rows' indices come from (see :meth:`StoreWriter.set_index_source`)."""
        self.writer.set_index_source(source)

    @property
    def knows_schema(self) -> bool:
        """Whether the schema is fixed before the first batch (an append or a resume)."""
        return self.writer.plan.schema is not None

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def _write(
        self,
        outputs: Mapping[str, Any],
        indices: Any,
        names: Sequence[str | None] | None,
        dataloader_idx: int,
        nbytes: int,
        prepare: Callable[[], None] | None,
        done: Callable[[], None] | None,
    ) -> None:
        try:
            if prepare is not None:
                prepare()
        except BaseException:
            self._release(nbytes, done)
            raise
        # Lent: the StoreWriter reads whole chunks where they are, and releases them once written.
        self.writer.write(
            outputs,
            indices,
            names=names,
            dataloader_idx=dataloader_idx,
            release=lambda: self._release(nbytes, done),
        )

    def _release(self, nbytes: int, done: Callable[[], None] | None) -> None:
        if done is not None:
            done()
        with self._space:
            self._pending -= nbytes
            self._space.notify_all()
