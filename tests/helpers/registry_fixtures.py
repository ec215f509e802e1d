"""Fixtures of the run-registry tests, shared by tests/registry and tests/cli.

Each of those folders' conftest.py imports them, so they apply there only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from registry_support import GeneratedRegistry, make_registry, validate_run_files


@pytest.fixture(autouse=True)
def _run_files_follow_their_schemas(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[None]:
    """Every sidecar.json and summary.json a test leaves in tmp_path must follow its schema."""
    yield
    if "damaged_run_files" not in request.fixturenames:
        validate_run_files(tmp_path)


@pytest.fixture
def damaged_run_files() -> None:
    """Requested by tests that damage run files on purpose (they validate the rest themselves)."""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedRegistry:
    """200 generated run directories, twelve of them damaged; shared read-only by a module."""
    registry = make_registry(tmp_path_factory.mktemp("registry"))
    validate_run_files(registry.root, skip=registry.damaged)
    return registry


@pytest.fixture
def fresh_generated(tmp_path: Path, damaged_run_files: None) -> GeneratedRegistry:
    """Like ``generated``, but private to one test, which may change it."""
    registry = make_registry(tmp_path / "runs")
    validate_run_files(registry.root, skip=registry.damaged)
    return registry
