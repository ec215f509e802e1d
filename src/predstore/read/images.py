"""Which stored values are images, and their 8-bit pixels.

One rule, shared by ``predstore export --files png`` and the viewer:

- shapes: (H, W); (C, H, W) with C in {1, 3, 4}; (C, D, H, W) volumes, whose D
  slices are stacked vertically into one (D*H, W) picture;
- dtypes: uint8 as is, bool as 0/255, integer labels in [0, 255] as is,
  floats (bfloat16 and float8 included) in [0, 1] scaled to 0..255 and rounded.

Anything else is refused with a ``SchemaError`` naming the key, its shape and
dtype, and saying what would fit: :func:`check_image` from the schema alone,
before any file is written; :func:`to_image` for what only the values tell
(an integer outside [0, 255], a float outside [0, 1], NaN).

Example::

    import numpy as np
    from predstore.read.images import to_image

    pixels = to_image(np.ones((3, 8, 8), np.float32), key="rgb")  # (8, 8, 3) uint8, all 255
"""

from __future__ import annotations

import numpy as np

from predstore.errors import SchemaError
from predstore.format.dtypes import NDArray

CHANNELS = (1, 3, 4)
WHAT_FITS = (
    "(H, W), (C, H, W) or (C, D, H, W) with C in {1, 3, 4}, of bool, integers in [0, 255] "
    "or floats in [0, 1]"
)


def check_image(shape: tuple[int | None, ...], dtype: str, *, key: str) -> None:
    """Raise ``SchemaError`` unless samples of ``shape`` (per sample; ``None`` varies) and ``dtype`` are images."""
    _check_shape(tuple(shape), dtype, key=key)
    if _kind(dtype) is None:
        raise _refuse(key, shape, dtype, "its dtype has no pixels")


def to_image(value: NDArray, *, key: str) -> NDArray:
    """The uint8 pixels of one sample: (H, W) for one channel, (H, W, C) for 3 or 4."""
    value = np.asarray(value)
    dtype = str(value.dtype)
    _check_shape(value.shape, dtype, key=key)
    pixels = _to_uint8(value, dtype, key=key)
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim == 4:  # (C, D, H, W): the slices one above the other
        channels, depth, height, width = pixels.shape
        pixels = pixels.reshape(channels, depth * height, width)
    if pixels.shape[0] == 1:
        return pixels[0]
    return np.ascontiguousarray(np.moveaxis(pixels, 0, -1))


def _check_shape(shape: tuple[int | None, ...], dtype: str, *, key: str) -> None:
    if len(shape) not in (2, 3, 4):
        raise _refuse(key, shape, dtype, f"it has {len(shape)} dimensions")
    if len(shape) > 2 and shape[0] is not None and shape[0] not in CHANNELS:
        hint = (
            " (channels come first: move the last axis to the front)"
            if shape[-1] in CHANNELS
            else ""
        )
        raise _refuse(
            key, shape, dtype, f"its first dimension ({shape[0]}) is not a channel count{hint}"
        )


def _kind(dtype: str) -> str | None:
    if dtype == "bool":
        return "bool"
    if dtype.startswith(("uint", "int")):
        return "int"
    if dtype.startswith(("float", "bfloat")):
        return "float"
    return None


def _to_uint8(value: NDArray, dtype: str, *, key: str) -> NDArray:
    kind = _kind(dtype)
    if kind is None:
        raise _refuse(key, value.shape, dtype, "its dtype has no pixels")
    if dtype == "uint8":
        return value
    if kind == "bool":
        return value.astype(np.uint8) * np.uint8(255)
    if kind == "int":
        if value.size and (value.min() < 0 or value.max() > 255):
            low, high = value.min(), value.max()
            raise _refuse(key, value.shape, dtype, f"its values span {low}..{high}")
        return value.astype(np.uint8)
    as_float = value.astype(np.float32)
    if as_float.size and not (np.all(as_float >= 0) and np.all(as_float <= 1)):
        low, high = np.nanmin(as_float), np.nanmax(as_float)
        nan = ", with NaN" if np.isnan(as_float).any() else ""
        raise _refuse(key, value.shape, dtype, f"its values span {low:g}..{high:g}{nan}")
    return np.rint(as_float * 255).astype(np.uint8)


def _refuse(key: str, shape: tuple[int | None, ...], dtype: str, why: str) -> SchemaError:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return SchemaError(
        f"key {key!r} ({dtype}[{dims}]) is not an image: {why}; an image is {WHAT_FITS}. "
        "Export it as npy or pt, or pass a writer that converts it"
    )
