"""Images into media/ with the media.jsonl index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from predstore.errors import ConfigError
from predstore.registry.rundir.media import MediaLog, read_media_index, to_pixels


def _pixels_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_every_input_kind_lands_on_disk_and_in_the_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    source = tmp_path / "given.jpg"
    source.write_bytes(b"\xff\xd8 not really a jpeg")
    media = MediaLog(tmp_path / "run")
    (tmp_path / "run").mkdir()
    media.add("numpy", rgb, step=1)
    media.add("torch", torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, step=2)
    media.add("pil", Image.fromarray(rgb), step=3, caption="a PIL image")
    media.add("val/path", source, step=4)
    assert media.pending == 4
    media.flush()
    assert media.pending == 0
    entries = read_media_index(tmp_path / "run")
    assert [e["key"] for e in entries] == ["numpy", "torch", "pil", "val/path"]
    assert [e["step"] for e in entries] == [1, 2, 3, 4]
    for entry in entries[:3]:
        assert (entry["width"], entry["height"], entry["channels"]) == (4, 6, 3)
        np.testing.assert_array_equal(_pixels_of(tmp_path / "run" / entry["path"]), rgb)
    assert entries[2]["caption"] == "a PIL image"
    copied = tmp_path / "run" / entries[3]["path"]
    assert copied.suffix == ".jpg"
    assert copied.read_bytes() == source.read_bytes()
    assert entries[3]["source"] == str(source)
    assert entries[3]["path"].startswith("media/val_path-s4-")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.zeros((2, 3)), np.zeros((2, 3, 1), np.uint8)),  # grey
        (np.ones((2, 3), bool), np.full((2, 3, 1), 255, np.uint8)),
        (np.array([[[-1.0, 0.5, 2.0]]]), np.array([[[0, 128, 255]]], np.uint8)),  # clipped
        (torch.ones(1, 2, 3), np.full((2, 3, 1), 255, np.uint8)),  # torch CHW
        (np.full((3, 2, 5), 7, np.int64).transpose(2, 1, 0)[:3], None),  # (3, 2, 3): HWC
    ],
)
def test_conversions(image: object, expected: np.ndarray | None) -> None:
    pixels = to_pixels(image)
    assert pixels.dtype == np.uint8
    if expected is not None:
        np.testing.assert_array_equal(pixels, expected)
    else:
        assert pixels.shape == (3, 2, 3)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("not an image object", "numpy array, a torch tensor, a PIL image or a file path"),
        (np.zeros((2, 2, 2, 2)), "2-D"),
        (np.zeros((5, 6, 7)), "1-4 channels"),
        (np.zeros((0, 4)), "empty"),
        (np.full((2, 2), 300), r"\[0, 255\]"),
        (np.zeros((2, 2), dtype=complex), "dtype complex"),
    ],
)
def test_bad_images_are_clear_errors(image: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        to_pixels(image)


def test_bad_keys_and_missing_files(tmp_path: Path) -> None:
    media = MediaLog(tmp_path)
    with pytest.raises(ConfigError, match="non-empty string key"):
        media.add("", np.zeros((2, 2)), step=0)
    with pytest.raises(ConfigError, match="cannot read the image file"):
        media.add("k", tmp_path / "missing.png", step=0)
    assert media.pending == 0


def test_failed_writes_stay_queued_and_torn_index_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "media.jsonl").write_text('{"key": "old", "path": "media/old.png"}\n{"key": "to')
    (tmp_path / "media").write_text("a file where the directory should be")
    media = MediaLog(tmp_path)
    media.add("k", np.zeros((2, 2)), step=5)
    with pytest.raises(OSError):  # noqa: PT011 - FileExistsError or NotADirectoryError
        media.flush()
    assert media.pending == 1
    (tmp_path / "media").unlink()
    media.flush()
    entries = read_media_index(tmp_path)
    assert [e["key"] for e in entries] == ["old", "k"]
