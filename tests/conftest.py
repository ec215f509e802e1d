"""Shared test fixtures.

Every test that writes a store has its manifests validated against the JSON
Schemas in ``schemas/`` when it ends: the store manifest, every commit
record in ``_commits/`` and every rank manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _resource(name: str) -> referencing.Resource[Any]:
    return referencing.Resource.from_contents(json.loads((SCHEMAS / name).read_text()))


# The commit record's schema refers to the store manifest's definitions by relative URI.
_REGISTRY: referencing.Registry[Any] = referencing.Registry().with_resources(
    (str(_resource(n).contents["$id"]), _resource(n))
    for n in ("store-manifest.schema.json", "commit-record.schema.json")
)


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker(), registry=_REGISTRY
    )


STORE_MANIFEST = _validator("store-manifest.schema.json")
RANK_MANIFEST = _validator("rank-manifest.schema.json")
COMMIT_RECORD = _validator("commit-record.schema.json")


def manifests_under(root: Path) -> list[tuple[Path, jsonschema.Draft202012Validator]]:
    """Every predstore manifest below ``root`` and the schema it must satisfy."""
    found = []
    for path in root.rglob("*.json"):
        if path.name == "manifest.json":
            found.append((path, STORE_MANIFEST))
        elif path.parent.name == "_commits":
            found.append((path, COMMIT_RECORD))
        elif path.name.startswith("rank-") and path.parent.parent.name == "writes":
            found.append((path, RANK_MANIFEST))
    return found


def validate_manifests(root: Path) -> int:
    """Validate every manifest below ``root``; return how many there were."""
    found = manifests_under(root)
    for path, validator in found:
        try:
            document = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # tests that corrupt manifests on purpose
        if document.get("format") != "predstore" or document.get("format_version") not in (1, 2):
            continue  # tests that write foreign or future manifests on purpose
        if validator is COMMIT_RECORD and document["format_version"] == 1:
            validator = STORE_MANIFEST  # format 1 recorded whole manifests
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{path} violates its JSON Schema: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )
    return len(found)


@pytest.fixture(autouse=True)
def _manifests_follow_their_schemas(request: pytest.FixtureRequest, tmp_path: Path):
    yield
    if not request.node.get_closest_marker("corrupts_manifests"):
        validate_manifests(tmp_path)
