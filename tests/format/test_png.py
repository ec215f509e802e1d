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


@pytest.mark.parametrize("level", [0, 1, 9])
def test_a_grey_image_without_a_channel_axis_reads_back_at_every_level(level: int) -> None:
    pixels = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4) * 10
    image = Image.open(io.BytesIO(encode_png(pixels, level=level)))
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), pixels)
