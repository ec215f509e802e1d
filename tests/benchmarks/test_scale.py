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
    result = scale.run("tiny", [40, 60], appends=12, fast_build_above=50, compact_up_to=50)
    parts, fast = result["parts"]
    assert fast["built_by"] != parts["built_by"] == "StoreWriter"
    assert fast["rows"] == 60 * scale.ROWS_PER_PART and "compact_s" not in fast
    assert parts["parts"] == 40 and parts["rows"] == 40 * scale.ROWS_PER_PART
    assert parts["parts_after_compact"] == 1
    assert 0 < parts["manifest_bytes_per_part"] < 1000
    assert result["appends"]["appends"] == 12 and result["appends"]["history_bytes"] > 0
    saved = json.loads((tmp_path / "results" / "scale-tiny.json").read_text())
    assert saved["parts"][0]["finalize_s"] == parts["finalize_s"]
    table = scale.report()
    assert "| tiny (" in table and (tmp_path / "results" / "scale.png").exists()


def test_the_fast_build_makes_the_files_the_writer_makes(tmp_path: Path) -> None:
    import predstore
    from predstore.read.verify import verify

    scale.build(tmp_path / "writer", 60)
    scale.build_fast(tmp_path / "fast", 60)
    for name in ("writer", "fast"):
        predstore.finalize(tmp_path / name)
    assert verify(tmp_path / "fast", deep=True).ok
    writer, fast = predstore.open(tmp_path / "writer"), predstore.open(tmp_path / "fast")
    for key in ("pred", "prob"):
        assert fast.read(key).tolist() == writer.read(key).tolist()
    assert fast.schema == writer.schema and fast.coverage == writer.coverage

    def entries(store: predstore.Store) -> list[tuple[int, ...]]:
        return [
            (p.rank, p.seq, p.rows, p.index_min, p.index_max, p.index_step or 0)
            for p in store.manifest.parts
        ]

    assert entries(fast) == entries(writer)
