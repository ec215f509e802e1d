"""Fixtures for the registry command-line tests: those of tests/helpers/registry_fixtures.py."""

from registry_fixtures import (  # noqa: F401  (fixtures are found by name)
    _run_files_follow_their_schemas,
    damaged_run_files,
    fresh_generated,
    generated,
)
