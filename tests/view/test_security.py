"""Who may talk to the viewer: the token, the Host header, and the files it may read."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from predstore.view import create_app
from predstore.view.security import COOKIE, host_name
from view_support import TOKEN, Data


@pytest.fixture
def fresh(data: Data) -> TestClient:
    """A client without the cookie: every request must prove itself."""
    return TestClient(create_app([data.a], token=TOKEN), base_url="http://127.0.0.1:9000")


@pytest.mark.parametrize(
    "route",
    [
        "/",
        "/store",
        "/rows",
        "/api/histogram?key=prob",
        "/static/view.js",
        "/static/plotly.min.js",
        "/export?format=indices",
    ],
)
def test_every_route_needs_the_token(fresh: TestClient, route: str) -> None:
    refused = fresh.get(route)
    assert refused.status_code == 403
    assert "token" in refused.text
    assert fresh.get(route, params={"token": "wrong"}).status_code == 403


def test_the_token_in_the_url_sets_a_strict_cookie_that_later_requests_carry(
    fresh: TestClient,
) -> None:
    first = fresh.get("/store", params={"token": TOKEN})
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert f"{COOKIE}={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert fresh.get("/rows").status_code == 200  # the cookie alone suffices now


@pytest.mark.parametrize("host", ["evil.example:9000", "127.0.0.1.evil.example", "attacker.test"])
def test_a_foreign_host_header_is_refused_even_with_the_token(fresh: TestClient, host: str) -> None:
    """DNS rebinding: a page on another name resolved to 127.0.0.1 gets nothing."""
    answer = fresh.get("/store", params={"token": TOKEN}, headers={"host": host})
    assert answer.status_code == 403
    assert "own address" in answer.text


@pytest.mark.parametrize("host", ["127.0.0.1:9000", "localhost:9000", "[::1]:9000", "LOCALHOST"])
def test_loopback_names_are_accepted(fresh: TestClient, host: str) -> None:
    assert fresh.get("/store", params={"token": TOKEN}, headers={"host": host}).status_code == 200


def test_host_name_strips_ports_and_brackets() -> None:
    assert host_name("127.0.0.1:8000") == "127.0.0.1"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("localhost") == "localhost"


def test_a_store_not_named_on_the_command_line_is_not_opened(
    client: TestClient, data: Data, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from view_support import write_store

    other = write_store(tmp_path / "other.pstore", shift=2)
    page = client.get("/store", params={"store": str(other)})
    assert page.status_code == 400
    assert "not a store this viewer serves" in page.text
    assert (
        client.get("/export", params={"store": str(other), "format": "indices"}).status_code == 400
    )


def test_media_is_served_only_when_the_run_logged_it(client: TestClient, data: Data) -> None:
    for path in ("../../a.pstore/manifest.json", "sidecar.json", "/etc/passwd"):
        answer = client.get("/media", params={"run": data.run_id, "path": path})
        assert answer.status_code == 404, path


@pytest.mark.parametrize("route", ["/rows", "/export", "/confusion"])
def test_a_filter_that_would_read_a_file_is_refused_inline(
    client: TestClient, data: Data, tmp_path, route: str
) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "secret.csv"
    secret.write_text("index\n424242\n")
    for where in (
        f"index IN (SELECT index FROM read_csv('{secret}'))",
        f"read_csv('{secret}') IS NOT NULL",
    ):
        answer = client.get(route, params={"store": str(data.a), "where": where})
        assert answer.status_code == 400, where
        assert "424242" not in answer.text
        assert "subquery" in answer.text or "did not parse" in answer.text
