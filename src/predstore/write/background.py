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

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from predstore.errors import PredstoreError
from predstore.format.manifest import StoreManifest
from predstore.write.store_writer import StoreWriter

_STOP = object()


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
            raise ValueError(f"max_pending_bytes must be positive, got {max_pending_bytes}")
        self.writer = writer
        self.max_pending_bytes = max_pending_bytes
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._space = threading.Condition()
        self._error: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._run, name="predstore-writer", daemon=True)
        self._thread.start()

    def submit(
        self,
        outputs: Mapping[str, Any],
        indices: Any,
        *,
        names: Sequence[str | None] | None = None,
        dataloader_idx: int = 0,
        nbytes: int = 0,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        """Queue one batch; block while more than ``max_pending_bytes`` wait to be written.

        ``prepare`` runs on the writer thread before the batch is read (for
        example, waiting for an asynchronous device-to-host copy to finish).
        """
        self.check()
        with self._space:
            # A batch larger than the whole budget still goes through, alone.
            while (
                self._pending
                and self._pending + nbytes > self.max_pending_bytes
                and self._error is None
            ):
                self._space.wait()
            self._pending += nbytes
        self.check()
        self._queue.put((outputs, indices, names, dataloader_idx, nbytes, prepare))

    def check(self) -> None:
        """Raise the error the thread met, once, with its original traceback; later calls say it stopped."""
        error = self._error
        if error is None:
            return
        if not self._raised:
            self._raised = True
            raise error
        raise PredstoreError(
            f"the background writer of {self.writer.path} stopped after: {error!r}"
        ) from error

    def drain(self) -> None:
        """Wait until every batch handed over so far is written (or the thread stopped)."""
        done = threading.Event()
        self._queue.put(done)
        while not done.wait(0.1):
            if not self._thread.is_alive():
                break

    def close(self) -> StoreManifest | None:
        """Write everything queued, then close the StoreWriter (see :meth:`StoreWriter.close`)."""
        self._stop()
        if self._error is not None:
            self.writer.fail()  # keep what was written before the error, then report it
            self.check()
        return self.writer.close()

    def fail(self) -> None:
        """Write what was queued if possible, then commit it and mark the rank failed (no store commit).

        Best effort, like :meth:`StoreWriter.fail`: it never raises.
        """
        self._stop()
        self.writer.fail()

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            outputs, indices, names, dataloader_idx, nbytes, prepare = item
            try:
                if self._error is None:
                    if prepare is not None:
                        prepare()
                    self.writer.write(outputs, indices, names=names, dataloader_idx=dataloader_idx)
            except BaseException as e:  # handed to the caller; later batches are dropped
                self._error = e
            finally:
                with self._space:
                    self._pending -= nbytes
                    self._space.notify_all()
