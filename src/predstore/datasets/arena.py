"""Whole batches handed from forked DataLoader workers to the main process in memory they share.

torch sends each batch a worker makes to the main process in a new
shared-memory segment: the worker touches every page of it for the first
time (on a virtual machine, costlier than decoding the batch), the main
process maps it and unmaps it. A :class:`BatchArena` is shared memory
mapped before the workers are forked: a worker copies a batch into a free
run of it and sends only where the run lies; the main process makes its
tensors of the run in place. A run is used again once every tensor made of
it, in every process, is gone, so its pages are touched once, not once per
batch.

Nothing changes for the user: the main process receives plain tensors of
the batch's values, its own until it drops them. A batch finds no free run
when the main process keeps many batches (or the arena is too small for
one): it then goes the usual way. A run whose batch never reaches the main
process (a worker stopped mid-epoch) stays taken: later batches go the
usual way when none is left.
"""

from __future__ import annotations

import functools
import mmap
import multiprocessing
import os
import secrets
import weakref
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch
from torch.multiprocessing.reductions import reduce_tensor

from predstore.errors import PredstoreError
from predstore.format.dtypes import NDArray

FORK = hasattr(mmap, "MAP_SHARED") and "fork" in multiprocessing.get_all_start_methods()
"""Whether processes can be forked here, sharing memory mapped before."""
GRANULE = 64 << 10
"""The arena is handed out in runs of whole granules of this many bytes."""

_ARENAS: weakref.WeakValueDictionary[str, BatchArena] = weakref.WeakValueDictionary()
"""This process's arenas (a forked process inherits its parent's), by token."""


class BatchArena:
    """``nbytes`` of memory shared by this process and the processes it forks from now on."""

    def __init__(self, nbytes: int) -> None:
        self.granules = max(1, nbytes // GRANULE)
        self._memory = mmap.mmap(-1, self.granules * GRANULE, flags=mmap.MAP_SHARED)
        self._start = np.frombuffer(self._memory, np.uint8).ctypes.data
        book = mmap.mmap(-1, 3 * 8 * self.granules, flags=mmap.MAP_SHARED)
        # Per granule: whether a run holds it; per run, at its first granule: its references
        # in all processes, and its length in granules.
        self._taken, self._refs, self._length = np.frombuffer(book, np.int64).reshape(3, -1)
        # Reentrant: a release runs when a tensor is collected, which may happen in any
        # allocation, one under this lock included.
        self._lock = multiprocessing.get_context("fork").RLock()
        self.token, self.pid = secrets.token_hex(8), os.getpid()
        _ARENAS[self.token] = self

    @classmethod
    def for_workers(cls, nbytes: int) -> BatchArena | None:
        """An arena for the workers this process forks, or ``None`` where there is no fork
        or no memory map left (past ``vm.max_map_count``): batches then go the usual way."""
        if not FORK:
            return None
        try:
            return cls(nbytes)
        except OSError:
            return None

    def claim(self, nbytes: int) -> int | None:
        """The first granule of a free run of ``nbytes`` (taken, one reference), or ``None``."""
        n = -(-max(1, nbytes) // GRANULE)
        if n > self.granules:
            return None
        with self._lock:
            free = np.concatenate([[0], np.cumsum(self._taken == 0)])
            fits = np.flatnonzero(free[n:] - free[:-n] == n)
            if not fits.size:
                return None
            start = int(fits[0])
            self._taken[start : start + n] = 1
            self._refs[start], self._length[start] = 1, n
        return start

    def address(self, run: int) -> int:
        """Where ``run`` starts in this process's memory."""
        return self._start + run * GRANULE

    def retain(self, run: int) -> None:
        with self._lock:
            self._refs[run] += 1

    def release(self, run: int) -> None:
        with self._lock:
            self._refs[run] -= 1
            if self._refs[run] == 0:
                self._taken[run : run + self._length[run]] = 0

    def free_granules(self) -> int:
        with self._lock:
            return int((self._taken == 0).sum())

    def view(self, run: int) -> NDArray:
        """The bytes of ``run`` for one of its references, released when the array (and every
        array and tensor made of it) is gone."""
        length = int(self._length[run]) * GRANULE
        array = np.frombuffer(self._memory, np.uint8, length, run * GRANULE)
        finalizer = weakref.finalize(array, self.release, run)
        finalizer.atexit = False
        return array

    def buffer(self, nbytes: int) -> tuple[torch.Tensor, Marker] | None:
        """A free run of at least ``nbytes`` as a uint8 tensor (``None`` if none is free, or
        in the process that made the arena, whose parent does not share it), and what makes a tensor of its bytes from offset ``start`` pickle, for another
        process sharing the arena, as where it lies."""
        if os.getpid() == self.pid:  # no process that made this one shares it
            return None
        run = self.claim(nbytes)
        if run is None:
            return None
        return torch.from_numpy(self.view(run)), functools.partial(
            _ArenaTensor.wrap, token=self.token, run=run
        )


Marker = Callable[[torch.Tensor, int], torch.Tensor]


class _ArenaTensor(torch.Tensor):
    """A tensor of a run of an arena, in the worker that filled it: pickled for another
    process (by multiprocessing) as where it lies; elsewhere (``torch.save``, ``copy``)
    as a plain tensor. Operations on it give plain tensors."""

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]
    _arena_at: tuple[str, int, int]

    @staticmethod
    def wrap(tensor: torch.Tensor, start: int, *, token: str, run: int) -> torch.Tensor:
        wrapped = tensor.as_subclass(_ArenaTensor)
        wrapped._arena_at = (token, run, start)
        return wrapped

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.as_subclass(torch.Tensor).__reduce_ex__(protocol)  # type: ignore[no-untyped-call]


def _reduce(tensor: _ArenaTensor) -> Any:
    token, run, start = tensor._arena_at
    arena = _ARENAS[token]
    if not tensor.is_contiguous() or tensor.data_ptr() != arena.address(run) + start:
        # Changed in place since (a view of other bytes): sent the way torch sends any tensor.
        return reduce_tensor(tensor.as_subclass(torch.Tensor))  # type: ignore[no-untyped-call]
    arena.retain(run)  # the receiver's reference, until its tensor is gone
    nbytes = tensor.numel() * tensor.element_size()
    return _rebuild, (token, run, start, nbytes, tensor.dtype, tuple(tensor.shape))


def _rebuild(
    token: str, run: int, start: int, nbytes: int, dtype: torch.dtype, shape: tuple[int, ...]
) -> torch.Tensor:
    arena = _ARENAS.get(token)
    if arena is None:
        raise PredstoreError(
            "a batch of a PredictionDataset was sent to a process that does not share its "
            "memory (one not forked from the process that made the dataset); send "
            "batch tensors there as copies (tensor.clone())"
        )
    part = arena.view(run)[start : start + nbytes]
    return torch.from_numpy(part).view(dtype).view(shape)


ForkingPickler.register(_ArenaTensor, _reduce)
