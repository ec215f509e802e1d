"""Starting the viewer from the command line: its URL, and the errors before it listens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from predstore.view import viewer_url


def test_the_url_carries_the_token_and_brackets_ipv6() -> None:
    assert viewer_url("127.0.0.1", 8000, "a b") == "http://127.0.0.1:8000/?token=a+b"
    assert viewer_url("::1", 8000, "t") == "http://[::1]:8000/?token=t"


def test_a_missing_path_is_an_error_before_anything_listens(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pstore"
    done = subprocess.run(
        [sys.executable, "-m", "predstore", "view", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"{missing} does not exist" in done.stderr.replace("\n", "")
    assert "http://" not in done.stdout
