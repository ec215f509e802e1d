"""How the sample page draws a value: the choice by shape and dtype, and the pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from predstore.errors import SchemaError
from predstore.view.pictures import MAX_BARS, TOP_K, describe, picture


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (np.int64(3), "text"),
        (np.array("case-1", dtype=object), "text"),
        (np.arange(10, dtype=np.float32), "bars"),
        (np.zeros((3, 8, 8), np.uint8), "image"),  # (C, H, W)
        (np.zeros((8, 8, 4), np.uint8), "image"),  # (H, W, C)
        (np.zeros((8, 8), np.float32), "image"),  # a heatmap
        (np.zeros((7, 8, 8), np.uint8), "slices"),  # a volume
        (np.zeros((2, 7, 8, 8), np.float32), "slices"),  # (C, D, H, W)
    ],
)
def test_each_shape_has_its_drawing(value: np.ndarray, kind: str) -> None:
    assert describe(value).kind == kind


def test_long_vectors_show_their_top_k_in_position_order() -> None:
    logits = np.linspace(-1, 1, MAX_BARS + 36).astype(np.float32)[::-1].copy()
    shown = describe(logits)
    assert shown.bars is not None and shown.bars["x"] == [str(i) for i in range(TOP_K)]
    assert "top 20" in shown.note
    assert len(describe(np.zeros(MAX_BARS)).bars["x"]) == MAX_BARS  # type: ignore[index]


def test_pictures_follow_the_shared_rule_and_scale_the_rest() -> None:
    labels = np.array([[0, 1], [2, 255]], np.uint8)
    assert np.array_equal(pixels(picture(labels, key="mask")), labels)
    logits = np.array([[-2.0, 0.0], [2.0, 6.0]], np.float32)
    assert pixels(picture(logits, key="heat")).tolist() == [[0, 64], [128, 255]]
    assert describe(logits).note and not describe(labels).note


def test_volume_slices_and_a_slice_out_of_range() -> None:
    volume = np.zeros((5, 6, 6), bool)
    volume[2] = True
    assert pixels(picture(volume, key="v", z=2)).min() == 255
    assert pixels(picture(volume, key="v", z=1)).max() == 0
    with pytest.raises(SchemaError, match="has 5 slices; slice 5"):
        picture(volume, key="v", z=5)
