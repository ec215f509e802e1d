"""The loose-files benchmark end to end on a few masks: every contender runs and passes its check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_contender_writes_every_mask(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    sizes = ["--masks", "12", "--size", "16", "--reps", "1", "--work", str(tmp_path / "work")]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loose_files", *sizes],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    results = measured["results"]
    assert set(results) == {
        "torch_save_loop",
        "pillow_png_loop",
        "predstore_png",
        "predstore_npy",
        "predstore_pt",
    }
    assert all(r["files"] == 12 and r["files_per_s"] > 0 for r in results.values())
    assert "| **predstore** `export --files png` |" in done.stdout


def test_a_wrong_file_is_caught(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.loose_files import check, masks, names
    finally:
        sys.path.remove(str(ROOT))
    import numpy as np
    import pytest

    values = masks(3, 8)
    for name, mask in zip(names(3), values, strict=True):
        np.save(tmp_path / f"{name}.npy", ~mask if name.endswith("1") else mask)
    with pytest.raises(AssertionError, match="case-00001.npy does not hold its mask"):
        check("npy", sorted(tmp_path.iterdir()), values)
