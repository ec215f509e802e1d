"""Starting the viewer from the command line: its URL, and the errors before it listens."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from predstore.view import viewer_url
from view_support import CLASSES, ROWS, write_store


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


def test_a_store_on_s3_is_served_from_its_url(s3) -> None:
    url = write_store(s3.url("a.pstore"), shift=5)
    command = [sys.executable, "-m", "predstore", "view", url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
        assert found, f"predstore view printed {line!r}"
        with httpx.Client(base_url=found.group(1), timeout=60, follow_redirects=True) as client:
            assert client.get("/", params={"token": found.group(2)}).status_code == 200
            overview = client.get("/store", params={"store": url})
            assert re.search(rf'id="row-count"[^>]*>{ROWS}<', overview.text)
            rows = client.get("/rows", params={"store": url, "where": "label = 1", "sort": "index"})
            assert re.search(rf'id="matched"[^>]*>{ROWS // CLASSES}<', rows.text)
            sample = client.get("/sample", params={"store": url, "index": 7})
            assert sample.status_code == 200 and "case-007" in sample.text
            picture = re.search(r'src="(/picture\?[^"]+key=image[^"]*)"', sample.text)
            assert picture, "the sample page shows the image key as a picture"
            png = client.get(picture.group(1).replace("&amp;", "&"))
            assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in process.stderr.read()  # type: ignore[union-attr]


def test_a_url_with_no_store_is_an_error_before_anything_listens(s3) -> None:
    url = s3.url("nothing.pstore")
    done = subprocess.run(
        [sys.executable, "-m", "predstore", "view", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "http://" not in done.stdout
    assert done.stderr.startswith("error: ") and url in done.stderr.replace("\n", "")
