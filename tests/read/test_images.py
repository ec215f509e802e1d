from __future__ import annotations

import io

import ml_dtypes
import numpy as np
import pytest
from PIL import Image

from predstore.errors import SchemaError
from predstore.read.images import check_image, to_image


def png_pixels(pixels: np.ndarray) -> np.ndarray:
    """What a PNG written by Pillow from ``pixels`` decodes to."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def test_uint8_passes_unchanged_and_grayscale_stays_2d() -> None:
    value = np.arange(48, dtype=np.uint8).reshape(6, 8)
    assert to_image(value, key="m") is value
    assert np.array_equal(png_pixels(to_image(value, key="m")), value)
    one_channel = to_image(value[None], key="m")
    assert one_channel.shape == (6, 8)
    assert np.array_equal(one_channel, value)


def test_bool_becomes_0_and_255() -> None:
    mask = np.array([[True, False], [False, True]])
    assert to_image(mask, key="m").tolist() == [[255, 0], [0, 255]]


def test_integer_labels_in_range_are_kept_and_others_refused() -> None:
    labels = np.array([[0, 7], [255, 3]], dtype=np.int64)
    image = to_image(labels, key="seg")
    assert image.dtype == np.uint8
    assert image.tolist() == labels.tolist()
    with pytest.raises(SchemaError, match=r"key 'seg' \(int64\[2, 2\]\).*values span -1\.\.3"):
        to_image(np.array([[0, -1], [3, 2]]), key="seg")
    with pytest.raises(SchemaError, match=r"values span 0\.\.256"):
        to_image(np.array([[0, 256]], dtype=np.uint16), key="seg")


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, ml_dtypes.bfloat16])
def test_floats_in_unit_range_are_scaled(dtype: type) -> None:
    rng = np.random.default_rng(0)
    value = rng.random((3, 5, 4)).astype(dtype)
    image = to_image(value, key="rgb")
    assert image.shape == (5, 4, 3)
    expected = np.rint(np.moveaxis(value.astype(np.float32), 0, -1) * 255).astype(np.uint8)
    assert np.array_equal(image, expected)
    assert np.array_equal(png_pixels(image), expected)


def test_floats_outside_unit_range_or_nan_are_refused() -> None:
    with pytest.raises(SchemaError, match=r"key 'p' \(float32\[2, 2\]\).*span -0\.5\.\.1"):
        to_image(np.array([[0, 1], [-0.5, 0.2]], np.float32), key="p")
    with pytest.raises(SchemaError, match="with NaN"):
        to_image(np.array([[0, np.nan]], np.float32), key="p")


def test_rgba_keeps_four_channels() -> None:
    value = np.zeros((4, 2, 3), np.uint8)
    value[3] = 255
    image = to_image(value, key="rgba")
    assert image.shape == (2, 3, 4)
    assert (image[..., 3] == 255).all()
    assert png_pixels(image).shape == (2, 3, 4)


def test_volume_slices_are_stacked_vertically() -> None:
    volume = np.stack([np.full((2, 3), d, np.uint8) for d in range(4)])[None]  # (1, 4, 2, 3)
    image = to_image(volume, key="vol")
    assert image.shape == (8, 3)
    assert image[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    rgb = to_image(np.repeat(volume, 3, axis=0), key="vol")
    assert rgb.shape == (8, 3, 3)
    assert np.array_equal(rgb[..., 1], image)


@pytest.mark.parametrize(
    ("shape", "dtype", "why"),
    [
        ((5,), "float32", "it has 1 dimensions"),
        ((1, 2, 3, 4, 5), "uint8", "it has 5 dimensions"),
        ((2, 8, 8), "uint8", r"its first dimension \(2\) is not a channel count;"),
        (
            (8, 8, 3),
            "uint8",
            r"its first dimension \(8\) is not a channel count \(channels come first",
        ),
        ((8, 8), "string", "its dtype has no pixels"),
    ],
)
def test_schemas_that_are_not_images_are_refused_by_name(
    shape: tuple[int, ...], dtype: str, why: str
) -> None:
    dims = ", ".join(map(str, shape))
    with pytest.raises(SchemaError, match=rf"key 'k' \({dtype}\[{dims}\]\) is not an image: {why}"):
        check_image(shape, dtype, key="k")
    if dtype != "string":
        with pytest.raises(SchemaError, match=why):
            to_image(np.zeros(shape, dtype), key="k")


def test_images_and_ragged_images_pass_the_schema_check() -> None:
    check_image((64, 64), "bool", key="mask")
    check_image((3, None, None), "float32", key="photo")
    check_image((1, 12, 64, 64), "bfloat16", key="volume")
    with pytest.raises(SchemaError, match="complex"):
        to_image(np.zeros((2, 2), np.complex64), key="k")
