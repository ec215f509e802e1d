"""The minimal PNG encoder, decoded by an independent reader (Pillow)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from predstore.format.png import encode_png


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_pillow_reads_back_every_pixel(channels: int, mode: str) -> None:
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, size=(7, 5, channels), dtype=np.uint8)
    image = Image.open(io.BytesIO(encode_png(pixels)))
    assert image.mode == mode
    assert image.size == (5, 7)
    decoded = np.asarray(image).reshape(7, 5, channels)
    np.testing.assert_array_equal(decoded, pixels)
