"""How the sample page shows one value: text, a bar chart, a picture or a stack of slices.

Whether a tensor is a picture, and how its values become pixels, is decided
by :func:`predstore.read.images.to_image` (shared with PNG export); values
outside its ranges (logits, distances) are shown scaled to their own min..max,
and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from predstore.errors import SchemaError
from predstore.format.dtypes import NDArray
from predstore.format.png import encode_png
from predstore.read.images import to_image

#: Vectors longer than this are shown by their top-k entries (logits over many classes).
TOP_K = 20
#: Longest vector drawn bar by bar.
MAX_BARS = 64


@dataclass(frozen=True)
class Shown:
    """How one key of one sample is drawn."""

    kind: str  # "text", "bars", "image" or "slices"
    shape: tuple[int, ...]
    dtype: str
    text: str = ""
    bars: dict[str, list[Any]] | None = None  # x (positions) and y (values)
    slices: int = 0  # slider length of a volume
    note: str = ""  # how the values were scaled or cut


def describe(value: Any) -> Shown:
    """Decide how to draw ``value``, one key's value of one sample."""
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        return Shown("text", (), _dtype(value), text=_text(value))
    shape, dtype = tuple(value.shape), str(value.dtype)
    if value.dtype.kind in "OSU":
        return Shown("text", shape, dtype, text=", ".join(map(str, value.ravel()[:200])))
    if value.ndim == 1:
        return _bars(value)
    if _is_picture(value):
        return Shown("image", shape, dtype, note=_scaling_note(value))
    if value.ndim >= 3:
        return Shown("slices", shape, dtype, slices=int(value.shape[-3]), note=_scaling_note(value))
    return Shown("image", shape, dtype, note=_scaling_note(value))


def _bars(value: NDArray) -> Shown:
    numbers = value.astype(np.float64)
    if len(value) <= MAX_BARS:
        positions = np.arange(len(value))
        note = ""
    else:
        positions = np.sort(np.argsort(-np.nan_to_num(numbers, nan=-np.inf), kind="stable")[:TOP_K])
        note = f"the top {TOP_K} of {len(value)} values, by position"
    bars = {"x": [str(p) for p in positions.tolist()], "y": numbers[positions].tolist()}
    return Shown("bars", tuple(value.shape), str(value.dtype), bars=bars, note=note)


def _is_picture(value: NDArray) -> bool:
    """(C,H,W) or (H,W,C) with C in 1, 3, 4."""
    return value.ndim == 3 and (value.shape[0] in (1, 3, 4) or value.shape[-1] in (3, 4))


def _scaling_note(value: NDArray) -> str:
    """Say so when the values are not a picture as they are (checked on one slice of a volume)."""
    if value.ndim >= 3 and not _is_picture(value):
        value = value.reshape(-1, *value.shape[-3:])[0][0]
    try:
        to_image(_channels_first(value), key="value")
    except SchemaError:
        return "values scaled from their minimum to their maximum"
    return ""


def picture(value: NDArray, *, key: str, z: int | None = None) -> bytes:
    """PNG bytes of a 2-D value, a (C,H,W)/(H,W,C) image, or slice ``z`` of a volume."""
    value = np.asarray(value)
    if value.ndim >= 3 and not _is_picture(value):
        depth = value.shape[-3]
        at = 0 if z is None else z
        if not 0 <= at < depth:
            raise SchemaError(f"key {key!r} has {depth} slices; slice {at} does not exist")
        value = value.reshape(-1, *value.shape[-3:])[0][at]
    value = _channels_first(value)
    try:
        pixels = to_image(value, key=key)
    except SchemaError:
        pixels = to_image(_unit_range(value), key=key)
    return encode_png(pixels)


def _channels_first(value: NDArray) -> NDArray:
    if value.ndim == 3 and value.shape[0] not in (1, 3, 4) and value.shape[-1] in (3, 4):
        return np.moveaxis(value, -1, 0)
    return value


def _unit_range(value: NDArray) -> NDArray:
    numbers = np.nan_to_num(value.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(numbers.min(initial=0.0)), float(numbers.max(initial=0.0))
    return (numbers - lo) / (hi - lo) if hi > lo else np.zeros_like(numbers)


def _dtype(value: Any) -> str:
    return str(value.dtype) if isinstance(value, np.generic | np.ndarray) else type(value).__name__


def _text(value: Any) -> str:
    if value is None or value is np.ma.masked:
        return "null"
    if isinstance(value, np.floating | float):
        return f"{float(value):.6g}"
    return str(value.item() if isinstance(value, np.generic) else value)
