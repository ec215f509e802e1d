"""The automatic codec choice: compress what shrinks, store noise as is."""

import numcodecs
import numpy as np
import pytest

from predstore.write import codecs


def test_auto_stores_float_noise_uncompressed() -> None:
    noise = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
    assert codecs.choose(noise.tobytes(), 4) == "stored"
    (stored,) = codecs.compressors("auto", None, 4, sample=noise.tobytes())
    assert (stored.cname.value, stored.clevel) == ("zstd", 0)  # Blosc at level 0 copies bytes
    encoded = numcodecs.Blosc(cname="zstd", clevel=0, shuffle=0).encode(noise)
    assert len(encoded) == noise.nbytes + 16


def test_auto_compresses_masks_with_zstd() -> None:
    mask = np.zeros((64, 64, 64), np.uint8)
    mask[10:30, 10:30, 10:30] = 1
    assert codecs.choose(mask.tobytes(), 1) == "zstd"


def test_auto_compresses_smooth_floats_with_fast_shuffled_lz4() -> None:
    # Smooth float32 values in [0, 1]: the exponent and high mantissa bytes
    # repeat, which byte shuffling lines up (1.9x); plain zstd sees noise (1.1x).
    probs = (np.sin(np.linspace(0, 20, 1 << 16)) ** 2).astype(np.float32)
    assert codecs.choose(probs.tobytes(), 4) == "blosc-lz4"


def test_auto_pays_for_zstd_only_where_it_shrinks_much_more() -> None:
    rng = np.random.default_rng(0)  # 5% non-zero float32: zstd 13x, LZ4 5x
    sparse = np.where(rng.random(1 << 16) < 0.05, rng.standard_normal(1 << 16), 0)
    assert codecs.choose(sparse.astype(np.float32).tobytes(), 4) == "zstd"


def test_empty_sample_is_not_compressed() -> None:
    assert codecs.choose(b"", 4) == "none"


def test_unknown_codec_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown codec 'lzma'; choose one of auto, zstd"):
        codecs.compressors("lzma", None, 4)
