"""benchmarks/scale.py end to end on tiny sizes: its figures come from correct stores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the benchmarks package lives beside src/, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks import scale  # noqa: E402


def test_scale_on_tiny_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "WORK", tmp_path / "work")
    monkeypatch.setattr(scale, "RESULTS", tmp_path / "results")
    result = scale.run("tiny", [40], appends=12)
    (parts,) = result["parts"]
    assert parts["parts"] == 40 and parts["rows"] == 40 * scale.ROWS_PER_PART
    assert parts["parts_after_compact"] == 1
    assert 0 < parts["manifest_bytes_per_part"] < 1000
    assert result["appends"]["appends"] == 12 and result["appends"]["history_bytes"] > 0
    saved = json.loads((tmp_path / "results" / "scale-tiny.json").read_text())
    assert saved["parts"][0]["finalize_s"] == parts["finalize_s"]
    table = scale.report()
    assert "| tiny (" in table and (tmp_path / "results" / "scale.png").exists()
