"""End to end: ``predstore view`` in a subprocess, driven by a real headless Chromium.

Chromium is the system's (Debian's ``chromium`` package, which
``scripts/setup.sh`` installs), driven by Playwright for Python; no browser is
ever downloaded. Each page's screenshot is saved under ``test-artifacts/view/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pytest

from view_support import ROWS, Data, labels, predictions

CHROMIUM = os.environ.get("PREDSTORE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "view"


@pytest.fixture(scope="module")
def server(data: Data) -> Iterator[str]:
    """The URL (with its token) that a real ``predstore view`` printed."""
    command = [sys.executable, "-m", "predstore", "view", str(data.a), str(data.b), str(data.runs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        assert found, (
            f"predstore view printed {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        )  # type: ignore[union-attr]
        yield found.group(0)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: scripts/setup.sh installs Debian's chromium package"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@dataclass
class Watch:
    """What one tab did that a test must not allow: requests to other hosts, JavaScript errors."""

    host: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def tab(browser, server: str) -> Iterator[tuple[object, Watch]]:  # type: ignore[no-untyped-def]
    """One tab for the module (a new tab costs a renderer process and a parse of plotly's
    4 MB script): it visits the token URL once, keeps the cookie, and is watched throughout."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    base = urlsplit(server)
    watch = Watch(base.netloc)
    tab.on(
        "request",
        lambda r: watch.foreign.append(r.url) if urlsplit(r.url).netloc != watch.host else None,
    )
    tab.on("pageerror", lambda e: watch.errors.append(str(e)))
    tab.goto(server)
    tab.base = f"{base.scheme}://{base.netloc}"  # type: ignore[attr-defined]
    yield tab, watch
    context.close()


@pytest.fixture
def page(tab: tuple[object, Watch]) -> Iterator[object]:
    """The module's tab; the test fails on any request to another host or any JavaScript error."""
    page, watch = tab
    watch.foreign.clear()
    watch.errors.clear()
    yield page
    assert not watch.foreign, f"the viewer fetched from elsewhere: {watch.foreign}"
    assert not watch.errors, f"JavaScript errors: {watch.errors}"


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_overview_draws_a_chart_per_scalar_key_and_a_bar_filters_the_rows(page, data: Data) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/store?store={quote(str(data.a))}")
    assert page.inner_text("#row-count") == str(ROWS)
    page.wait_for_selector("figure.histogram .plot .main-svg")
    assert page.locator("figure.histogram .main-svg").count() >= 3
    shot(page, "overview")
    label_chart = page.locator("figure.histogram", has_text="label")
    box = label_chart.locator("g.point path").nth(2).bounding_box()  # the bar of label 2
    # plotly listens on the layer above its bars: click where the bar is drawn
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_url(re.compile(r"/rows\?"))
    assert page.input_value("input[name=where]") == '"label" = 2'
    assert page.inner_text("#matched") == str(int((labels(np.arange(ROWS)) == 2).sum()))


def test_rows_filter_sort_and_bad_filter(page, data: Data) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/rows?store={quote(str(data.a))}")
    page.fill("input[name=where]", "prob > 0.5 AND label = 1")
    page.click("button[type=submit]")
    page.click("#rows th >> text=prob")
    shot(page, "rows")
    header = page.locator("#rows th").all_inner_texts()
    prob_at = [h.split(" ")[0] for h in header].index("prob")
    probs = [
        float(t) for t in page.locator(f"#rows tr td:nth-child({prob_at + 1})").all_inner_texts()
    ]
    assert probs == sorted(probs) and all(p > 0.5 for p in probs) and probs
    page.fill("input[name=where]", "prob >>> 1")
    page.click("button[type=submit]")
    assert "did not parse" in page.inner_text("#filter-error")


def test_confusion_cell_click_shows_its_rows(page, data: Data) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/confusion?store={quote(str(data.a))}")
    shot(page, "confusion")
    page.click('#matrix a[data-actual="0"][data-predicted="1"]')
    page.wait_for_url(re.compile(r"/rows\?"))
    index = np.arange(ROWS)
    behind = index[(labels(index) == 0) & (predictions(index, 5) == 1)]
    assert page.inner_text("#matched") == str(len(behind))
    shown = [int(a) for a in page.locator("#rows tr td:first-child a").all_inner_texts()]
    assert sorted(shown) == behind.tolist()


def test_sample_slice_slider_changes_the_picture(page, data: Data) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/sample?store={quote(str(data.a))}&index=9")
    page.wait_for_selector("div.bars .main-svg")
    volume = page.locator('section[data-key="volume"]')
    image = volume.locator("img")
    first = image.evaluate("img => img.naturalWidth")
    assert first == 8
    slider = volume.locator("input.slice")
    slider.fill("3")  # sets the value and fires input
    assert volume.locator("output").inner_text() == "3"
    assert image.get_attribute("src").endswith("z=3")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth == 8", arg=image.element_handle()
    )
    for key in ("image", "heat"):
        assert page.locator(f'section[data-key="{key}"] img').evaluate("i => i.naturalWidth") > 0
    shot(page, "sample")


def test_compare_two_stores_and_a_sample_side_by_side(page, data: Data) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/compare")
    page.select_option("select[name=a]", str(data.a))
    page.select_option("select[name=b]", str(data.b))
    page.click("button[type=submit]")
    index = np.arange(ROWS)
    a, b = predictions(index, 5), predictions(index, 3)
    assert float(page.inner_text("#agreement")) == pytest.approx((a == b).mean(), abs=1e-3)
    shot(page, "compare")
    page.locator("#listed a", has_text="side by side").first.click()
    page.wait_for_url(re.compile(r"/compare/sample"))
    assert page.locator('section[data-key="pred"]').count() == 2
    shot(page, "compare-sample")


def test_runs_curves_and_a_run_with_its_media(page, data: Data) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{page.base}/runs")
    page.check(f"input[name=run][value='{data.run_id}']")
    page.click("button[type=submit]")
    page.wait_for_selector("figure.curve .main-svg")
    assert page.locator("figure.curve").count() == 2
    shot(page, "runs")
    page.click(f"text={data.run_id}")
    media = page.locator("section.media")
    media.locator("input.step").fill("2")
    assert media.locator("output").inner_text() == "2"
    page.wait_for_function(
        "img => img.complete && img.naturalWidth == 8", arg=media.locator("img").element_handle()
    )
    shot(page, "run")
    page.click("#stores a")
    assert page.inner_text("#row-count") == str(ROWS)
