"""Reading rows of Zarr keys, touching only the chunks that hold them."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from predstore.errors import CorruptStoreError
from predstore.format import dtypes
from predstore.format.fs import FileSystem
from predstore.format.manifest import ArrayEntry

NDArray = np.ndarray[Any, Any]


class ArrayReader:
    """One committed Zarr array, opened on first use; reads never go past its committed extent."""

    def __init__(self, fs: FileSystem, entry: ArrayEntry) -> None:
        self.fs, self.entry = fs, entry
        self.dtype = dtypes.get(entry.dtype)
        self._array: Any = None

    @property
    def array(self) -> Any:
        if self._array is None:
            self._array = self._open()
        return self._array

    def _open(self) -> Any:
        entry = self.entry
        try:
            array = zarr.open_array(self.fs.zarr_store(entry.path, read_only=True), mode="r")
        except Exception as e:  # zarr raises many types for a missing or damaged array
            raise CorruptStoreError(
                f"array {entry.path} (key {entry.key!r}) cannot be opened: {e}"
            ) from None
        if array.shape[0] < entry.length or list(array.shape[1:]) != entry.shape[1:]:
            raise CorruptStoreError(
                f"array {entry.path} has shape {array.shape}, its manifest says "
                f"{entry.length} x {entry.shape[1:]}"
            )
        if str(array.dtype) != entry.zarr_dtype:
            raise CorruptStoreError(
                f"array {entry.path} holds {array.dtype}, its manifest says {entry.zarr_dtype}"
            )
        return array

    def rows(self, positions: NDArray) -> NDArray:
        """The rows at ``positions`` (in that order), as the logical dtype."""
        return self.dtype.from_zarr(self._take(positions))

    def spans(self, starts: NDArray, sizes: NDArray) -> list[NDArray]:
        """For a flat (ragged) array: the elements ``[start, start + size)`` of each row."""
        if not len(starts):
            return []
        lo, hi = int(starts.min()), int((starts + sizes).max())
        covered = int(sizes.sum())
        if covered * 4 >= hi - lo:  # dense enough: read the whole range once
            data = self.dtype.from_zarr(self._slice(lo, hi))
            return [
                data[s - lo : s - lo + n]
                for s, n in zip(starts.tolist(), sizes.tolist(), strict=True)
            ]
        elements = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, sizes, strict=True)])
        data = self.rows(elements) if elements.size else np.zeros(0, self.dtype.numpy)
        return np.split(data, np.cumsum(sizes)[:-1])

    def _slice(self, lo: int, hi: int) -> NDArray:
        self._check_bounds(hi)
        return self.array[lo:hi]

    def _take(self, positions: NDArray) -> NDArray:
        if not len(positions):
            return np.zeros((0, *self.entry.shape[1:]), self.dtype.zarr)
        unique, inverse = np.unique(positions, return_inverse=True)
        lo, hi = int(unique[0]), int(unique[-1]) + 1
        self._check_bounds(hi)
        if len(unique) * 4 >= hi - lo:  # dense enough: one contiguous read
            data = self.array[lo:hi][unique - lo]
        else:
            data = self.array.get_orthogonal_selection((unique,))
        return data[inverse]

    def _check_bounds(self, stop: int) -> None:
        if stop > self.entry.length:
            raise CorruptStoreError(
                f"array {self.entry.path}: a part refers to position {stop - 1}, "
                f"past its committed extent {self.entry.length}"
            )
