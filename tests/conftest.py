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


# -- object storage: a local S3 server (moto) and a fault-injecting proxy -----------


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 at a free port, for the whole session (one per worker)."""
    from s3_support import MotoServer

    server = MotoServer()
    yield server
    server.stop()


class S3:
    """A fresh bucket on the local server; the environment points every S3 client at it."""

    def __init__(self, server, bucket: str, endpoint: str) -> None:
        self.server, self.bucket, self.endpoint = server, bucket, endpoint

    def url(self, name: str = "preds.pstore") -> str:
        return f"s3://{self.bucket}/{name}"

    def keys(self, prefix: str = "") -> list[str]:
        return self.server.keys(self.bucket, prefix)

    def check_manifests(self) -> None:
        """Every manifest in the bucket follows its JSON Schema, as on a local disk."""
        import obstore
        from obstore.store import from_url

        client = from_url(f"s3://{self.bucket}", client_options={"allow_http": True})
        for key in self.keys():
            name = key.rsplit("/", 1)[-1]
            if name == "manifest.json":
                validator = STORE_MANIFEST
            elif "/_commits/0" in key:
                validator = COMMIT_RECORD
            elif name.startswith("rank-") and name.endswith(".json"):
                validator = RANK_MANIFEST
            else:
                continue
            document = json.loads(bytes(obstore.get(client, key).bytes()))
            errors = list(validator.iter_errors(document))
            assert not errors, f"{key}: {errors[0].message}"


def _point_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    from s3_support import CREDENTIALS, REGION

    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3(s3_server, monkeypatch: pytest.MonkeyPatch) -> S3:
    _point_at(monkeypatch, s3_server.endpoint)
    return S3(s3_server, s3_server.new_bucket(), s3_server.endpoint)


@pytest.fixture
def s3_proxy(s3_server, monkeypatch: pytest.MonkeyPatch):
    """Like ``s3``, through a :class:`s3_support.FaultProxy` (``.proxy``) that can fail requests."""
    from s3_support import FaultProxy

    proxy = FaultProxy(s3_server.endpoint)
    _point_at(monkeypatch, proxy.endpoint)
    env = S3(s3_server, s3_server.new_bucket(), proxy.endpoint)
    env.proxy = proxy  # type: ignore[attr-defined]
    yield env
    proxy.stop()
