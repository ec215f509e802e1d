"""OrderedJobs: the writer's I/O, run one job at a time, in the order it was asked for.

Everything that touches a rank's files after a batch is buffered goes
through here: appending compressed chunks to shard files, closing shards,
closing parts, saving the rank manifest. One thread runs the jobs in order,
which is the commit protocol's order (data files before the manifest that
lists them), so the caller never waits for the disk; with
``background=False`` jobs run inline. The first error is kept and raised to
the caller (once, with its traceback); later jobs run their ``cleanup``
instead, so that nothing waits for them forever.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from predstore.errors import PredstoreError

_STOP = object()


class OrderedJobs:
    def __init__(
        self,
        *,
        background: bool,
        name: str = "predstore-io",
        owner: str = "the writer",
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.owner = owner
        """Who runs these jobs, as the error after the first one names it."""
        self._on_error = on_error
        self.error: BaseException | None = None
        self._raised = False
        self._queue: queue.SimpleQueue[Any] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self._thread.start()

    def submit(
        self, job: Callable[..., None], *args: Any, cleanup: Callable[[], None] | None = None
    ) -> None:
        """Run ``job(*args)`` after every job submitted before it.

        After an error, ``cleanup()`` runs instead of a job (a job that raises
        cleans up after itself).
        """
        if self._queue is None:
            self._run(job, args, cleanup)
        else:
            self._queue.put((job, args, cleanup))

    def drain(self) -> None:
        """Wait until every job submitted so far has run; raise the first error, if any."""
        self.wait()
        self.check()

    def wait(self) -> None:
        """Wait until every job submitted so far has run (or cleaned up after an error)."""
        if self._queue is not None:
            done = threading.Event()
            self._queue.put(done)
            done.wait()

    def check(self) -> None:
        """Raise the first error: itself the first time, then a PredstoreError that points to it."""
        if self.error is None:
            return
        if not self._raised:
            self._raised = True
            raise self.error
        raise PredstoreError(
            f"{self.owner} stopped after an error while writing: {self.error!r}"
        ) from self.error

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def _loop(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._run(*item)

    def _run(
        self, job: Callable[..., None], args: tuple[Any, ...], cleanup: Callable[[], None] | None
    ) -> None:
        if self.error is not None:
            if cleanup is not None:
                cleanup()
            return
        try:
            job(*args)
        except BaseException as e:  # kept for the caller; the thread goes on, running cleanups
            if self._on_error is not None:
                self._on_error(e)  # for example, a note on what the error means for the data
            self.error = e
