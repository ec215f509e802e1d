"""A minimal PNG encoder for 8-bit grey, RGB and RGBA images (no imaging library needed).

The one PNG writer of the registry (``log_image``), the viewer's pictures and
``export_files(writer="png")``: it sits in ``format``, the layer all of them may import.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def encode_png(pixels: np.ndarray, level: int = 6) -> bytes:
    """Encode a ``uint8`` array of shape (height, width) or (height, width, channels) as PNG bytes.

    Args:
        pixels: the image; no channel axis or 1 channel is grey, 2 grey+alpha, 3 RGB, 4 RGBA.
        level: zlib's compression level (0-9); 1 suits bulk exports, where the encoding
            time counts more than a few bytes.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    rows = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(height, width * channels)
    # Each scanline starts with its filter type; 0 (none) keeps the encoder trivial.
    scanlines = np.hstack([np.zeros((height, 1), dtype=np.uint8), rows])
    body = zlib.compress(scanlines.tobytes(), level)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
