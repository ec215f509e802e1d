"""``media/`` and ``media.jsonl``: images logged by a run.

Each image becomes a file under ``media/`` (PNG for arrays, tensors and PIL
images; a copy with its own extension for a path) and one JSON line in
``media.jsonl``::

    {"key": "val/samples", "step": 120, "path": "media/val_samples-s120-3f2a9c1e.png",
     "time": "...", "width": 64, "height": 64, "channels": 3, "caption": null,
     "source": null}

Array conventions: 2-D is (H, W) grey; 3-D numpy is (H, W, C) and 3-D torch
is (C, H, W), each falling back to the other layout when only that one has 1,
2, 3 or 4 channels. Floating-point values are taken to lie in [0, 1] and are
clipped to it; NaN becomes 0; integers must lie in [0, 255]; booleans map to
0 and 255.

Images are converted when logged (bad input raises at once) and written at
the next save; a write that fails stays queued and is retried at the save
after. The image file is written first and its index line second, so an
index line always points at a complete file; readers skip an index line
torn by a crash.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from predstore.errors import ConfigError, CorruptRunError
from predstore.format.png import encode_png
from predstore.registry._atomic import atomic_write
from predstore.registry._time import now_iso
from predstore.registry.rundir._read import parse_json, read_regular
from predstore.registry.rundir.files import MEDIA_DIR, MEDIA_INDEX

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CHANNELS = (1, 2, 3, 4)


def to_pixels(image: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor or PIL image to ``uint8`` (H, W, C).

    Raises:
        ConfigError: if the input is of another type, shape or value range.
    """
    module = type(image).__module__.split(".")[0]
    channels_first = False
    if module == "torch":
        image = image.detach().cpu()
        if str(image.dtype) == "torch.bfloat16":
            image = image.float()
        array = image.numpy()
        channels_first = True
    elif module == "PIL":
        if image.mode not in ("1", "L", "LA", "RGB", "RGBA"):  # palette, 16-bit, CMYK, ...
            image = image.convert("RGBA")
        array = np.asarray(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise ConfigError(
            "log_image expects a numpy array, a torch tensor, a PIL image or a file path; "
            f"got {type(image).__name__}"
        )
    return _to_uint8(_to_hwc(array, channels_first))


def _to_hwc(array: np.ndarray, channels_first: bool) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        first_ok, last_ok = array.shape[0] in _CHANNELS, array.shape[2] in _CHANNELS
        if (channels_first and first_ok) or (first_ok and not last_ok):
            array = np.moveaxis(array, 0, -1)
        elif not last_ok:
            raise ConfigError(f"log_image: no axis of shape {array.shape} holds 1-4 channels")
    else:
        raise ConfigError(
            f"log_image expects a 2-D (H, W) or 3-D image; got shape {tuple(array.shape)}"
        )
    if 0 in array.shape:
        raise ConfigError(f"log_image: the image is empty (shape {tuple(array.shape)})")
    return array


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        scaled = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ConfigError(
                f"log_image: integer pixels must lie in [0, 255]; got values in [{low}, {high}]"
            )
        return array.astype(np.uint8)
    raise ConfigError(f"log_image: cannot make an image of dtype {array.dtype}")


@dataclass
class _Pending:
    entry: dict[str, Any]
    data: bytes


class MediaLog:
    """Queues images and writes them to a run directory's ``media/`` and index."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._pending: list[_Pending] = []

    @property
    def pending(self) -> int:
        """Images logged but not yet written."""
        return len(self._pending)

    def add(self, key: str, image: Any, *, step: int | None, caption: str | None = None) -> None:
        """Convert an image now and queue it for the next :meth:`flush`."""
        if not isinstance(key, str) or not key:
            raise ConfigError(f"log_image needs a non-empty string key; got {key!r}")
        stem = f"{_UNSAFE.sub('_', key).strip('_') or 'image'}-s{step}-{secrets.token_hex(4)}"
        entry: dict[str, Any] = {"key": key, "step": step, "time": now_iso(), "caption": caption}
        if isinstance(image, (str, os.PathLike)):
            data, suffix = self._read_source(Path(image))
            entry.update(width=None, height=None, channels=None, source=str(image))
        else:
            pixels = to_pixels(image)
            data, suffix = encode_png(pixels), ".png"
            height, width, channels = pixels.shape
            entry.update(width=width, height=height, channels=channels, source=None)
        entry["path"] = f"{MEDIA_DIR}/{stem}{suffix}"
        self._pending.append(_Pending(entry, data))

    @staticmethod
    def _read_source(source: Path) -> tuple[bytes, str]:
        try:
            return source.read_bytes(), source.suffix.lower()
        except OSError as exc:
            raise ConfigError(f"log_image: cannot read the image file {source}: {exc}") from exc

    def flush(self) -> None:
        """Write queued images, oldest first.

        Raises:
            OSError: on the first image that cannot be written; it and the later
                ones stay queued.
        """
        if not self._pending:
            return
        (self.run_dir / MEDIA_DIR).mkdir(exist_ok=True)
        index = self.run_dir / MEDIA_INDEX
        while self._pending:
            item = self._pending[0]
            atomic_write(self.run_dir / item.entry["path"], item.data)
            _append_line(index, json.dumps(item.entry))
            self._pending.pop(0)


def _append_line(path: Path, line: str) -> None:
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a torn line from a crash: end it, readers skip it
                f.write(b"\n")
        f.write(line.encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def read_media_index(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of ``media.jsonl``, skipping lines that do not parse."""
    try:
        data = read_regular(run_dir / MEDIA_INDEX)
    except FileNotFoundError:
        return []
    entries = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            entry = parse_json(line, run_dir / MEDIA_INDEX)
        except CorruptRunError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
