"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one file run in order in one namespace, in a fresh temporary
directory, on CPU, in a process of their own (so that a block may start a DDP
Trainer, which relaunches the script on its other ranks). A block whose first
line is ``# not run by the tests: <reason>`` is skipped; the session's summary
says how many were skipped and why.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doc_examples import blocks

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "tests" / "helpers" / "doc_examples.py"
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WITH_CODE = [p for p in MARKDOWN if blocks(p.read_text())]


def test_blocks_are_found() -> None:
    text = "a\n```python\nx = 1\n```\n\n  ```python\n  # not run by the tests: no GPU\n  y\n  ```\n"
    found = blocks(text)
    assert [(b.line, b.source, b.skip_reason) for b in found] == [
        (3, "x = 1", None),
        (7, "# not run by the tests: no GPU\ny", "no GPU"),
    ]
    assert len(WITH_CODE) >= 5, [p.name for p in WITH_CODE]


@pytest.mark.parametrize("markdown", WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(
    markdown: Path, tmp_path: Path, record_property: pytest.RecordProperty
) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(markdown)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    name = markdown.relative_to(ROOT)
    assert done.returncode == 0, f"an example of {name} failed:\n{done.stderr[-6000:]}"
    summary = json.loads(done.stdout.strip().rsplit("\n", 1)[-1])
    expected = len(blocks(markdown.read_text()))
    assert summary["ran"] + len(summary["skipped"]) == expected
    for skipped in summary["skipped"]:
        assert skipped["reason"], f"{name}:{skipped['line']} is skipped without a reason"
        record_property("skipped_example", f"{name}:{skipped['line']}: {skipped['reason']}")
    print(f"{name}: {summary['ran']} blocks ran, {len(summary['skipped'])} skipped")
