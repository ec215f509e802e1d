"""Fixtures of the viewer's tests: two small stores and a registry, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from predstore.view import create_app
from view_support import TOKEN, Data, make_data


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return make_data(tmp_path_factory.mktemp("view"))


@pytest.fixture(scope="session")
def client(data: Data) -> Iterator[TestClient]:
    """A viewer of both stores and the registry, through Starlette's TestClient."""
    app = create_app([data.a, data.b, data.runs], token=TOKEN)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        test_client.get("/", params={"token": TOKEN})  # sets the token cookie
        yield test_client
