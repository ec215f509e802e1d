"""One file per row: every format round-trips, names stay inside the folder, bad input writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import predstore
from predstore.errors import ConfigError, QueryError, SchemaError, StoreExistsError, UnknownKeyError
from predstore.read.files import MAX_NAME_BYTES, safe_file_name

HOSTILE = ["../escape", "/etc/passwd", "a\x00b", "x" * 400, "..", ".hidden", "ok name", "ünï/cødé"]


def masks(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 6, 5)) > 0.5


@pytest.fixture
def store(tmp_path: Path) -> predstore.Store:
    n = len(HOSTILE)
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write(
            {
                "mask": masks(n),
                "prob": np.linspace(0, 1, n, dtype=np.float32),
                "rgb": np.random.default_rng(1).random((n, 3, 4, 4), dtype=np.float32),
                "logit": torch.randn(n, 4, dtype=torch.bfloat16),
                "note": [f"note {i}" for i in range(n)],
                "volume": np.random.default_rng(2).integers(0, 9, (n, 1, 3, 4, 4), dtype=np.uint8),
            },
            list(range(n)),
            names=HOSTILE,
        )
    return predstore.open(tmp_path / "s")


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_png_pixels_equal_the_scaled_values(store: predstore.Store, tmp_path: Path) -> None:
    out = tmp_path / "png"
    done = store.export_files("rgb", out, writer="png", file_names="index")
    assert done.written == len(HOSTILE) and files_in(out) == sorted(f"{i}.png" for i in range(8))
    values = store.read("rgb")
    for i in range(len(HOSTILE)):
        pixels = np.asarray(Image.open(out / f"{i}.png"))
        assert np.array_equal(pixels, np.rint(np.moveaxis(values[i], 0, -1) * 255).astype(np.uint8))
    store.export_files("mask", tmp_path / "mask", writer="png", file_names="index")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "mask" / "3.png")), masks(8)[3] * 255)
    store.export_files("volume", tmp_path / "vol", writer="png", file_names="index")
    stacked = np.asarray(Image.open(tmp_path / "vol" / "2.png"))
    assert np.array_equal(stacked, store.read("volume", [2])[0, 0].reshape(12, 4))


def test_png_export_needs_no_imaging_library(store: predstore.Store, tmp_path: Path) -> None:
    # Pillow is a test dependency only: the export must work where it is not installed.
    script = (
        "import sys; sys.modules['PIL'] = None\n"
        "import predstore\n"
        f"predstore.open({str(store.path)!r}).export_files("
        f"'mask', {str(tmp_path / 'out')!r}, writer='png', file_names='index')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "5.png")), masks(8)[5] * 255)


def test_pt_files_load_to_the_exact_tensor(store: predstore.Store, tmp_path: Path) -> None:
    store.export_files("logit", tmp_path / "pt", writer="pt", file_names="index")
    expected = store.read("logit", as_torch=True)
    for i in range(len(HOSTILE)):
        loaded = torch.load(tmp_path / "pt" / f"{i}.pt")
        assert loaded.dtype == torch.bfloat16 and torch.equal(loaded, expected[i])
        assert loaded.untyped_storage().nbytes() == loaded.nbytes  # one row, not its whole block


def test_progress_reports_files_written_of_files_to_write(
    store: predstore.Store, tmp_path: Path
) -> None:
    seen: list[tuple[int, int]] = []
    store.export_files(
        "mask", tmp_path / "o", where="index >= 3", progress=lambda *a: seen.append(a)
    )
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)


def test_npy_and_txt(store: predstore.Store, tmp_path: Path) -> None:
    store.export_files("mask", tmp_path / "npy", writer="npy", indices=[2, 5], file_names="index")
    assert files_in(tmp_path / "npy") == ["2.npy", "5.npy"]
    assert np.array_equal(np.load(tmp_path / "npy" / "5.npy"), masks(8)[5])
    store.export_files("note", tmp_path / "txt", writer="txt", file_names="index")
    assert (tmp_path / "txt" / "4.txt").read_text() == "note 4\n"
    store.export_files("prob", tmp_path / "p", writer="txt", file_names="index", indices=[7])
    assert float((tmp_path / "p" / "7.txt").read_text()) == 1.0


def test_a_callable_writer_gets_a_temporary_path_with_the_final_suffix(
    store: predstore.Store, tmp_path: Path
) -> None:
    seen: list[str] = []

    def write(path: str, value: Any) -> None:
        seen.append(path)
        Path(path).write_text(str(value.shape))

    out = tmp_path / "custom"
    store.export_files("rgb", out, writer=write, suffix=".nii.gz", names=["ok name"], workers=1)
    assert files_in(out) == ["ok name.nii.gz"]
    assert seen[0].endswith(".nii.gz") and Path(seen[0]).parent == out.resolve()
    assert Path(seen[0]).name.startswith(".ok name.predstore-partial-")
    assert (out / "ok name.nii.gz").read_text() == "(3, 4, 4)"


def test_hostile_names_stay_inside_the_folder(store: predstore.Store, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    done = store.export_files("mask", out, writer="npy")
    assert done.written == len(HOSTILE)
    written = files_in(out)
    assert len(written) == len(HOSTILE)
    assert all(len(f.encode()) <= MAX_NAME_BYTES + 4 for f in written)
    assert all("/" not in f and "\x00" not in f and not f.startswith(".") for f in written)
    assert sorted(p.name for p in tmp_path.rglob("*.npy")) == written  # nothing anywhere else
    assert "_escape.npy" in written and "_etc_passwd.npy" in written and "a_b.npy" in written
    by_name = dict(zip(HOSTILE, store.read("mask"), strict=True))
    assert np.array_equal(np.load(out / f"{safe_file_name('ünï/cødé')}.npy"), by_name["ünï/cødé"])


def test_safe_names_keep_long_names_distinct() -> None:
    a, b = safe_file_name("y" * 300 + "a"), safe_file_name("y" * 300 + "b")
    assert a != b and len(a.encode()) <= MAX_NAME_BYTES
    assert safe_file_name("..") == "_" and safe_file_name("") == "_"
    assert safe_file_name("case-01.v2") == "case-01.v2"


def test_colliding_names_are_refused_naming_both_rows(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"mask": masks(3)}, [0, 1, 2], names=["a/b", "c", "a_b"])
    store = predstore.open(tmp_path / "s")
    with pytest.raises(ConfigError, match=r"index 0 \(name 'a/b'\) and index 2 \(name 'a_b'\)"):
        store.export_files("mask", tmp_path / "out", writer="npy")
    assert not (tmp_path / "out").exists()
    store.export_files("mask", tmp_path / "out", writer="npy", file_names="index")
    assert files_in(tmp_path / "out") == ["0.npy", "1.npy", "2.npy"]


def test_names_differing_only_in_case_are_refused_as_one_file(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"mask": masks(2)}, [0, 1], names=["Case-7", "case-7"])
    store = predstore.open(tmp_path / "s")
    with pytest.raises(ConfigError, match=r"'Case-7.npy' \(file names that differ only in case"):
        store.export_files("mask", tmp_path / "out", writer="npy")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("key", "writer", "error", "message"),
    [
        ("nope", "npy", UnknownKeyError, "key 'nope' is not in the store"),
        ("logit", "png", SchemaError, r"key 'logit' \(bfloat16\[4\]\) is not an image"),
        ("logit", "npy", SchemaError, "export it as pt"),
        ("note", "pt", SchemaError, "holds strings; export it as txt"),
        ("rgb", "txt", SchemaError, "not a string or scalar"),
        ("rgb", "jpeg", ConfigError, "writer must be one of pt, npy, png, txt"),
    ],
)
def test_bad_input_writes_nothing(
    store: predstore.Store, tmp_path: Path, key: str, writer: str, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        store.export_files(key, tmp_path / "out", writer=writer)
    assert not (tmp_path / "out").exists()


def test_values_outside_the_image_range_are_refused(tmp_path: Path) -> None:
    with predstore.StoreWriter(tmp_path / "s") as writer:
        writer.write({"depth": np.full((2, 4, 4), 3.5, np.float32)}, [0, 1])
    store = predstore.open(tmp_path / "s")
    with pytest.raises(SchemaError, match=r"key 'depth' \(float32\[4, 4\]\).*span 3.5..3.5"):
        store.export_files("depth", tmp_path / "out", writer="png")
    assert [f for f in os.listdir(tmp_path / "out") if not f.startswith(".")] == []


def test_where_selects_rows(store: predstore.Store, tmp_path: Path) -> None:
    store.export_files("mask", tmp_path / "w", file_names="index", where="prob > 0.5 AND index < 7")
    assert files_in(tmp_path / "w") == ["4.npy", "5.npy", "6.npy"]
    with pytest.raises(QueryError, match=r"unknown column\(s\) \['label'\]"):
        store.export_files("mask", tmp_path / "bad", where="label = 1")
    assert not (tmp_path / "bad").exists()


def test_a_folder_with_files_needs_overwrite_or_skip(
    store: predstore.Store, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "3.npy").write_bytes(b"keep me")
    (out / ".3.predstore-partial-dead.npy").write_bytes(b"half")  # a killed export's leftover
    with pytest.raises(StoreExistsError, match="already holds 1 file"):
        store.export_files("mask", out, file_names="index")
    assert (out / "3.npy").read_bytes() == b"keep me"
    done = store.export_files("mask", out, file_names="index", existing="skip")
    assert (done.written, done.skipped) == (7, 1)
    assert (out / "3.npy").read_bytes() == b"keep me"
    assert files_in(out) == sorted(f"{i}.npy" for i in range(8))  # the leftover is gone
    store.export_files("mask", out, file_names="index", existing="overwrite")
    assert np.array_equal(np.load(out / "3.npy"), masks(8)[3])


def test_an_output_that_is_a_file_or_cannot_be_made_is_refused(
    store: predstore.Store, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreExistsError, match="is a file"):
        store.export_files("mask", tmp_path / "file")
    with pytest.raises(OSError, match="Not a directory"):  # a folder that cannot be made
        store.export_files("mask", tmp_path / "file" / "out")


def test_a_failing_writer_leaves_complete_files_only(
    store: predstore.Store, tmp_path: Path
) -> None:
    def write(path: str, value: Any) -> None:
        Path(path).write_bytes(b"partial")
        if value.sum() == masks(8)[5].sum():
            raise RuntimeError("killed")
        Path(path).write_bytes(b"complete")

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="killed"):
        store.export_files("mask", out, writer=write, file_names="index", workers=1)
    assert all((out / f).read_bytes() == b"complete" for f in files_in(out))
    assert "5" not in files_in(out) and not any(f.startswith(".") for f in os.listdir(out))
