"""The viewer's pages over HTTP (Starlette's TestClient): what each shows and how it fails."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from starlette.testclient import TestClient

import predstore
from predstore.view import create_app, sources
from view_support import CLASSES, ROWS, TOKEN, Data, labels, predictions, write_store


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, f"no element {element_id}"
    return found.group(1)


def errors_in(html: str) -> list[str]:
    return re.findall(r'class="error"[^>]*>([^<]*)<', html)


def test_the_home_page_of_a_registry_is_the_runs_page(client: TestClient) -> None:
    answer = client.get("/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/runs"


def test_the_home_page_of_a_store_is_its_overview(data: Data) -> None:
    with TestClient(create_app([data.a], token=TOKEN), base_url="http://127.0.0.1") as c:
        answer = c.get("/", params={"token": TOKEN})
    assert answer.status_code == 200
    assert str(data.a) in answer.text and 'id="keys"' in answer.text


def test_overview_shows_rows_keys_coverage_writes_and_charts(
    client: TestClient, data: Data
) -> None:
    page = client.get("/store", params={"store": str(data.a)})
    assert page.status_code == 200
    assert text_of(page.text, "row-count") == str(ROWS)
    store = predstore.open(data.a)
    for key, spec in store.schema.keys.items():
        assert f"<td>{key}</td><td>{spec.storage}</td><td>{spec.dtype}</td>" in page.text
    assert store.manifest.writes[0].write_id in page.text
    charted = re.findall(r'data-src="/api/histogram\?store=[^&]+&amp;key=(\w+)"', page.text)
    assert charted == ["pred", "label", "prob"]


def test_histogram_of_a_float_key_counts_every_row_in_its_bins(
    client: TestClient, data: Data
) -> None:
    h = client.get("/api/histogram", params={"store": str(data.a), "key": "prob"}).json()
    assert sum(h["counts"]) == ROWS and len(h["counts"]) == 40 and h["nulls"] == 0
    frame = predstore.open(data.a).scan().collect()
    for where, count in zip(h["filters"], h["counts"], strict=True):
        assert frame.filter(pl.sql_expr(where)).height == count, where


def test_histogram_of_an_integer_key_is_a_value_count(client: TestClient, data: Data) -> None:
    h = client.get("/api/histogram", params={"store": str(data.a), "key": "label"}).json()
    assert h["labels"] == [str(c) for c in range(CLASSES)]
    assert h["counts"] == [ROWS // CLASSES] * CLASSES
    assert h["filters"][2] == '"label" = 2'


def test_histogram_of_an_unknown_key_is_a_message(client: TestClient, data: Data) -> None:
    answer = client.get("/api/histogram", params={"store": str(data.a), "key": "logits"})
    assert answer.status_code == 400
    assert "not a scalar Parquet key" in answer.json()["error"]


def test_rows_are_filtered_sorted_and_paged(client: TestClient, data: Data) -> None:
    query = {"store": str(data.a), "where": "pred != label", "sort": "index", "desc": "1"}
    index = np.arange(ROWS)
    wrong = sorted(index[predictions(index, 5) != labels(index)].tolist(), reverse=True)
    for number in (1, 2):
        page = client.get("/rows", params={**query, "size": "5", "page": str(number)})
        assert page.status_code == 200
        assert text_of(page.text, "matched") == str(len(wrong))
        shown = [int(i) for i in re.findall(r"&amp;index=(\d+)\">", page.text)]
        assert shown == wrong[(number - 1) * 5 : number * 5]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("prob <<< 2", "did not parse"),
        ("nosuch > 1", "unknown column(s) ['nosuch']"),
        ("image > 1", "unknown column(s) ['image']"),  # a Zarr key is no column
        ("index IN (SELECT 1 FROM read_parquet('/etc/passwd'))", "holds a subquery"),
    ],
)
def test_a_bad_filter_is_an_inline_message_never_a_server_error(
    client: TestClient, data: Data, where: str, message: str
) -> None:
    page = client.get("/rows", params={"store": str(data.a), "where": where})
    assert page.status_code == 400
    (shown,) = errors_in(page.text)
    assert message in shown.replace("&#39;", "'")
    assert 'name="where"' in page.text  # the form stays, to fix the filter


def test_a_bad_page_number_is_a_message(client: TestClient, data: Data) -> None:
    page = client.get("/rows", params={"store": str(data.a), "page": "two"})
    assert page.status_code == 400 and "takes an integer" in errors_in(page.text)[0]


def test_sample_shows_every_key_by_its_shape(client: TestClient, data: Data) -> None:
    page = client.get("/sample", params={"store": str(data.a), "index": "7"})
    assert page.status_code == 200
    assert "case-007" in page.text
    pred = re.search(r'data-key="pred">\s*<h3>.*</h3>\s*<p class="value">(\d+)</p>', page.text)
    assert pred and int(pred.group(1)) == predictions(np.arange(8), 5)[7]
    bars = json.loads(
        re.search(r'class="bars" data-bars="([^"]*)"', page.text).group(1).replace("&#34;", '"')
    )
    logits = predstore.open(data.a).read("logits", [7])[0]
    top = np.sort(np.argsort(-logits)[:20])
    assert bars["x"] == [str(i) for i in top]
    assert np.allclose(bars["y"], logits[top])
    assert "the top 20 of 100 values" in page.text
    assert 'type="range" class="slice" min="0" max="4"' in page.text  # the volume's 5 slices
    assert page.text.count("values scaled from their minimum to their maximum") == 1  # heat only


def test_sample_by_name_and_its_neighbours(client: TestClient, data: Data) -> None:
    page = client.get("/sample", params={"store": str(data.a), "name": "case-042"})
    assert "<h1>Sample 42 · case-042</h1>" in page.text
    assert "index=43" in page.text and "index=41" in page.text
    missing = client.get("/sample", params={"store": str(data.a), "name": "nobody"})
    assert missing.status_code == 400 and "no sample named 'nobody'" in missing.text.replace(
        "&#39;", "'"
    )
    outside = client.get("/sample", params={"store": str(data.a), "index": "100000"})
    assert outside.status_code == 400


def test_pictures_are_pngs_of_the_values(client: TestClient, data: Data) -> None:
    from PIL import Image

    store = predstore.open(data.a)
    image = Image.open(
        io.BytesIO(
            client.get(
                "/picture", params={"store": str(data.a), "key": "image", "index": "3"}
            ).content
        )
    )
    expected = np.round(np.moveaxis(store.read("image", [3])[0], 0, -1) * 255).astype(np.uint8)
    assert image.size == (16, 16) and np.array_equal(np.asarray(image), expected)
    z = client.get(
        "/picture", params={"store": str(data.a), "key": "volume", "index": "3", "z": "4"}
    )
    slice4 = np.asarray(Image.open(io.BytesIO(z.content)))
    assert np.array_equal(slice4, store.read("volume", [3])[0][4].astype(np.uint8) * 255)
    beyond = client.get(
        "/picture", params={"store": str(data.a), "key": "volume", "index": "3", "z": "5"}
    )
    assert beyond.status_code == 400 and "5 slices" in beyond.text


def test_confusion_matrix_counts_and_links_to_its_rows(client: TestClient, data: Data) -> None:
    page = client.get("/confusion", params={"store": str(data.a)})
    assert page.status_code == 200
    index = np.arange(ROWS)
    pred, label = predictions(index, 5), labels(index)
    assert float(text_of(page.text, "accuracy")) == pytest.approx((pred == label).mean(), abs=1e-3)
    link = re.search(r'href="(/rows\?[^"]*)" data-actual="1" data-predicted="2"', page.text).group(
        1
    )
    rows = client.get(link.replace("&amp;", "&"))
    assert text_of(rows.text, "matched") == str(int(((label == 1) & (pred == 2)).sum()))


def test_confusion_of_keys_that_cannot_be_crossed_is_a_message(
    client: TestClient, data: Data
) -> None:
    page = client.get("/confusion", params={"store": str(data.a), "pred": "prob"})
    assert page.status_code == 400 and "cannot be a confusion-matrix axis" in page.text


def test_compare_measures_agreement_fixed_and_broken(client: TestClient, data: Data) -> None:
    page = client.get("/compare", params={"a": str(data.a), "b": str(data.b), "list": "fixed"})
    assert page.status_code == 200
    index = np.arange(ROWS)
    a, b, label = predictions(index, 5), predictions(index, 3), labels(index)
    assert float(text_of(page.text, "agreement")) == pytest.approx((a == b).mean(), abs=1e-3)
    assert float(text_of(page.text, "accuracy-b")) == pytest.approx((b == label).mean(), abs=1e-3)
    fixed = index[(a != label) & (b == label)]
    assert f"fixed: {len(fixed)} samples" in page.text
    listed = [int(i) for i in re.findall(r"/compare/sample\?[^\"]*index=(\d+)", page.text)]
    assert listed == fixed.tolist()
    unlabelled = {"a": str(data.a), "b": str(data.b), "label": "", "list": "fixed"}
    refused = client.get("/compare", params=unlabelled)
    assert refused.status_code == 400 and "needs a label key" in errors_in(refused.text)[0]
    by_name = client.get("/compare", params={"a": str(data.a), "b": str(data.b), "on": "name"})
    assert text_of(by_name.text, "agreement") == text_of(page.text, "agreement")


def test_compare_side_by_side(client: TestClient, data: Data) -> None:
    page = client.get("/compare/sample", params={"a": str(data.a), "b": str(data.b), "index": "15"})
    assert page.status_code == 200
    assert page.text.count('data-key="logits"') == 2
    assert f"store={data.b}".replace("/", "%2F") in page.text


def test_export_an_index_list_that_store_read_accepts(client: TestClient, data: Data) -> None:
    answer = client.get(
        "/export", params={"store": str(data.a), "where": "pred != label", "format": "indices"}
    )
    assert "attachment" in answer.headers["content-disposition"]
    selection = answer.json()
    store = predstore.open(data.a)
    chosen = selection["indices"]["0"]
    assert np.array_equal(
        store.read("pred", chosen) != store.read("label", chosen), np.ones(len(chosen), bool)
    )
    assert len(chosen) == int((predictions(np.arange(ROWS), 5) != labels(np.arange(ROWS))).sum())


def test_export_a_parquet_file_of_the_selection(
    client: TestClient, data: Data, tmp_path: Path
) -> None:
    answer = client.get(
        "/export", params={"store": str(data.a), "where": "label = 3", "sort": "prob"}
    )
    out = tmp_path / "selection.parquet"
    out.write_bytes(answer.content)
    frame = pl.read_parquet(out)
    assert frame.height == ROWS // CLASSES and (frame["label"] == 3).all()
    assert frame["prob"].is_sorted()


def test_runs_page_lists_runs_and_overlays_curves(client: TestClient, data: Data) -> None:
    page = client.get("/runs", params={"run": data.run_id})
    assert page.status_code == 200
    assert data.run_id in page.text and "hparams.lr" in page.text and "summary.loss" in page.text
    curves = re.findall(r'class="curve" data-lines="([^"]*)"><figcaption>(\w+)<', page.text)
    assert [name for _, name in curves] == ["acc", "loss"]
    loss = json.loads(curves[1][0].replace("&#34;", '"'))
    assert loss[0]["x"] == list(range(10)) and loss[0]["y"][3] == pytest.approx(0.25)


def test_runs_filter_with_the_registry_language(client: TestClient) -> None:
    assert (
        'data-running="0">0 runs' in client.get("/runs", params={"where": "hparams.lr > 0.5"}).text
    )
    assert (
        'data-running="0">1 runs' in client.get("/runs", params={"where": "hparams.lr <= 0.5"}).text
    )
    bad = client.get("/runs", params={"where": "nosuch.field = 1"})
    assert bad.status_code == 400 and errors_in(bad.text)


def test_run_page_links_its_stores_and_media(client: TestClient, data: Data) -> None:
    page = client.get("/run", params={"run": data.run_id})
    assert page.status_code == 200
    assert f'href="/store?store={str(data.a).replace("/", "%2F")}"' in page.text
    assert 'class="step" min="0" max="9"' in page.text
    path = re.search(r'src="/media\?run=[^&]+&amp;path=([^"]+)"', page.text).group(1)
    image = client.get("/media", params={"run": data.run_id, "path": path.replace("%2F", "/")})
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_a_store_linked_by_the_registry_is_served(data: Data) -> None:
    with TestClient(create_app([data.runs], token=TOKEN), base_url="http://127.0.0.1") as c:
        assert c.get("/store", params={"token": TOKEN, "store": str(data.a)}).status_code == 200
        assert c.get("/store", params={"store": str(data.b)}).status_code == 400


def test_a_damaged_store_is_a_message_and_the_rest_keeps_serving(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "RECHECK", 0.0)  # check the manifest on every request
    broken = tmp_path / "broken.pstore"
    shutil.copytree(data.a, broken)
    with TestClient(create_app([broken, data.b], token=TOKEN), base_url="http://127.0.0.1") as c:
        c.get("/", params={"token": TOKEN})
        # The checkpoint and the commit records it could be rebuilt from.
        for manifest in [broken / "manifest.json", *(broken / "_commits").glob("*.json")]:
            manifest.write_text("{ not json")
        page = c.get("/store", params={"store": str(broken)})
        assert page.status_code == 503 and errors_in(page.text)
        assert c.get("/store", params={"store": str(data.b)}).status_code == 200


def test_an_overwrite_while_open_shows_the_new_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "RECHECK", 0.0)
    path = write_store(tmp_path / "s.pstore", shift=5)
    with TestClient(create_app([path], token=TOKEN), base_url="http://127.0.0.1") as c:
        c.get("/", params={"token": TOKEN})
        assert text_of(c.get("/store").text, "row-count") == str(ROWS)
        with predstore.StoreWriter(path, mode="overwrite", retention=0) as w:
            w.write({"pred": np.arange(3), "label": np.arange(3)}, [0, 1, 2])
        predstore.vacuum(path, retention=0)
        assert text_of(c.get("/store").text, "row-count") == "3"
        assert text_of(c.get("/rows").text, "matched") == "3"


def test_a_live_run_updates_in_the_polled_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predstore.registry import RunWriter

    monkeypatch.setattr(sources, "RESCAN", 0.0)  # scan the registry on every request
    run = RunWriter(tmp_path / "runs" / "live", save_interval=0)
    run.open()
    run.log_metrics({"loss": 1.0}, step=1)
    run.save(force=True)
    with TestClient(create_app([tmp_path / "runs"], token=TOKEN), base_url="http://127.0.0.1") as c:
        page = c.get("/runs", params={"token": TOKEN})
        assert 'data-running="1"' in page.text
        poll = re.search(r'data-live="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        assert "fragment=1" in poll
        before = c.get(poll).text
        assert "<html" not in before and "summary.loss" in before
        run.log_metrics({"loss": 0.25}, step=7)
        run.save(force=True)
        after = c.get(poll).text
        assert "<td>0.25</td>" in after and "<td>0.25</td>" not in before
        run.finalize("completed")
        assert 'data-running="0"' in c.get(poll).text


def test_a_store_being_written_is_a_message_until_it_commits(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "RECHECK", 0.0)
    path = tmp_path / "writing.pstore"
    writer = predstore.StoreWriter(path, commit_interval=None)
    writer.write({"pred": np.arange(4), "label": np.arange(4)}, [0, 1, 2, 3])
    writer.commit()  # the rank's parts are on disk; the store manifest is not
    assert path.is_dir() and not (path / "manifest.json").exists()
    with TestClient(create_app([path, data.b], token=TOKEN), base_url="http://127.0.0.1") as c:
        c.get("/", params={"token": TOKEN})
        page = c.get("/store", params={"store": str(path)})
        assert page.status_code == 503
        assert "holds no committed store" in " ".join(errors_in(page.text))
        assert c.get("/store", params={"store": str(data.b)}).status_code == 200
        writer.close()
        assert text_of(c.get("/store", params={"store": str(path)}).text, "row-count") == "4"


def test_a_damaged_run_is_named_on_the_runs_page_and_the_rest_keeps_serving(
    data: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "RESCAN", 0.0)
    runs = tmp_path / "runs"
    shutil.copytree(data.runs, runs)
    with TestClient(create_app([runs, data.b], token=TOKEN), base_url="http://127.0.0.1") as c:
        assert data.run_id in c.get("/runs", params={"token": TOKEN}).text
        (runs / "resnet" / "v0" / "sidecar.json").write_text("{ not json")
        page = c.get("/runs")
        assert page.status_code == 200 and data.run_id not in page.text
        problems = page.text.split('id="problems"')[1].split("</div>")[0]
        assert "resnet/v0/sidecar.json: " in problems
        assert c.get("/store", params={"store": str(data.b)}).status_code == 200
