"""HostBuffers: the writer's own host copy of each batch's outputs, in memory reused batch to batch.

The writer writes a batch on its own thread after the hook has returned, and a
model may refill its output tensors for the next batch, so what the writer reads
must be its own copy. Copying into freshly allocated memory costs more in page
faults than in copying (0.44 s against 0.05 s over 196 batches of 1 MB on a
2-core VM), so large outputs are copied into buffers taken from a pool, and the
buffers go back to it once the writer is done with the batch: it encodes whole
chunks straight from them, and copies whatever else it keeps.

Tensors on a CUDA device are copied without making the predict loop wait: into
pinned host buffers, with ``non_blocking=True``, and an event recorded after
the copies that the writer's thread waits on (:attr:`HostBatch.ready`) before it
reads them. A buffer goes back to the pool only after the write (and after that
event), so a copy in flight never lands in memory the writer is reading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from predstore.errors import PredstoreError
from predstore.write.batch import tensor_to_numpy

POOLED_BYTES = 64 << 10
"""Outputs from this size on are copied into pooled buffers; smaller ones are plain copies."""


@dataclass
class HostBatch:
    """One batch's outputs on the host, owned by the writer until :meth:`release`."""

    outputs: dict[str, Any]
    nbytes: int
    """The bytes of the outputs handed over (what the writer's queue counts)."""
    ready: Callable[[], None] | None = None
    """Wait for the device-to-host copies (``None`` when there are none): the writer's thread
    calls it before it reads the outputs."""
    buffers: list[Any] = field(default_factory=list)
    pool: HostBuffers | None = None

    def release(self) -> None:
        """Give the buffers back to the pool: the writer is done with the outputs."""
        buffers, self.buffers = self.buffers, []
        if not buffers or self.pool is None:
            return
        if self.ready is not None:
            try:
                self.ready()  # a batch dropped after an error may still be copying
            except BaseException:  # the device failed: let the buffers go
                return
        self.pool.give_back(buffers)


class HostBuffers:
    """A pool of host buffers for the outputs of batches in flight, by size in bytes.

    ``keep_bytes`` bounds the memory the pool keeps while no batch uses it (the
    writer's queue, ``max_pending_bytes``, bounds what batches in flight hold).

    Example::

        import torch
        from predstore.lightning.host_buffers import HostBuffers

        pool = HostBuffers(keep_bytes=64 << 20)
        logits = torch.randn(256, 1000)
        batch = pool.copy({"logits": logits})
        logits.zero_()  # the model refills its output: the copy is the writer's own
        assert batch.outputs["logits"].any()
        batch.release()  # the writer is done: the next batch reuses the buffer
        pool.copy({"logits": logits})
        assert pool.allocated == 1
    """

    def __init__(self, *, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self.allocated = 0
        """Buffers made so far (each one costs page faults the first time it is written)."""
        self._free: dict[tuple[int, bool], list[Any]] = {}
        self._free_bytes = 0
        self._lock = threading.Lock()

    def copy(self, outputs: dict[str, Any]) -> HostBatch:
        """Host copies of ``outputs`` that the caller cannot reach; device copies start without waiting."""
        batch = HostBatch({}, 0, pool=self)
        stream = None

        def move(value: Any) -> Any:
            nonlocal stream
            if isinstance(value, torch.Tensor):
                value = value.detach()
                batch.nbytes += value.element_size() * value.nelement()
                if value.device.type == "cuda" and _plain(value):
                    stream = torch.cuda.current_stream(value.device)
                    return self._copy_from_device(value, batch)
                if value.device.type != "cpu":
                    return value.to("cpu")  # a new tensor: other devices copy as they can
                return self._copy_array(value, batch)
            if isinstance(value, np.ndarray):
                batch.nbytes += value.nbytes
                return self._copy_array(value, batch)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [move(v) for v in value]
            return value

        batch.outputs = {k: move(v) for k, v in outputs.items()}
        if stream is not None:
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record(stream)
            batch.ready = event.synchronize
        return batch

    def give_back(self, buffers: list[Any]) -> None:
        """Return buffers to the pool, keeping at most ``keep_bytes`` of them."""
        with self._lock:
            for buffer in buffers:
                size = _nbytes(buffer)
                if self._free_bytes + size > self.keep_bytes:
                    continue  # dropped: freed when the last view of it goes
                pinned = isinstance(buffer, torch.Tensor)  # numpy buffers are pageable
                self._free.setdefault((size, pinned), []).append(buffer)
                self._free_bytes += size

    def _take(self, size: int, *, pinned: bool) -> Any:
        with self._lock:
            free = self._free.get((size, pinned))
            if free:
                self._free_bytes -= size
                return free.pop()
        self.allocated += 1
        if pinned:
            return torch.empty(size, dtype=torch.uint8, pin_memory=True)
        return np.empty(size, dtype=np.uint8)

    def _copy_array(self, value: Any, batch: HostBatch) -> Any:
        """A copy of a CPU tensor or numpy array, as numpy (what the writer stores).

        numpy's copy is a plain memcpy; torch's ``clone`` goes through its intra-op
        thread pool and took 50 to 150 times as long on a busy 2-core machine.
        Tensors numpy cannot hold (sparse, nested, unsupported dtypes) are cloned,
        and the writer refuses them with a SchemaError.
        """
        source = value
        if isinstance(value, torch.Tensor):
            try:
                source = tensor_to_numpy(value, key="?")
            except (PredstoreError, TypeError, RuntimeError):
                return value.clone()
        if source.nbytes < POOLED_BYTES or source.dtype.hasobject:
            return np.array(source, copy=True)
        buffer = self._take(source.nbytes, pinned=False)
        batch.buffers.append(buffer)
        copy = buffer.view(source.dtype).reshape(source.shape)
        np.copyto(copy, source)
        return copy

    def _copy_from_device(self, value: torch.Tensor, batch: HostBatch) -> torch.Tensor:
        size = value.element_size() * value.nelement()
        buffer = self._take(size, pinned=True)
        batch.buffers.append(buffer)
        copy = buffer.view(value.dtype).view(value.shape)
        copy.copy_(value, non_blocking=True)
        return copy


def _plain(tensor: torch.Tensor) -> bool:
    """A dense tensor with values (the others are refused by the writer, with advice)."""
    return tensor.layout == torch.strided and not tensor.is_nested and tensor.nelement() > 0


def _nbytes(buffer: Any) -> int:
    return int(buffer.nbytes) if isinstance(buffer, np.ndarray) else buffer.nelement()
