"""Fuzzing manifest parsing: whatever the bytes, only predstore's documented errors escape."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predstore
from predstore.format.manifest import RankManifest, StoreManifest, decode
from support import write_ranks

pytestmark = pytest.mark.corrupts_manifests

_TEMPLATE = Path(tempfile.mkdtemp(prefix="predstore-fuzz-")) / "store"
write_ranks(_TEMPLATE, [list(range(20)), list(range(20, 33))], shard_bytes=8 * 1200)
MANIFEST = json.loads((_TEMPLATE / "manifest.json").read_text())
RANK = json.loads(next(_TEMPLATE.rglob("rank-00000.json")).read_text())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a JSON document."""
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths(v, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> bytes:
    doc = json.loads(json.dumps(template))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(doc)[1:]))
        parent = doc
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "delete", "path"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "path":
            parent[where[-1]] = draw(
                st.sampled_from(["../x", "/etc/passwd", "a/../../b", "", ".", "writes/../../.."])
            )
        else:
            parent[where[-1]] = draw(json_values)
    data = json.dumps(doc).encode()
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(data)))
        data = data[:cut]
    return data


DOCUMENTED = (predstore.CorruptStoreError, predstore.FormatVersionError)


@settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=mutated(MANIFEST))
def test_store_manifest_parsing(data: bytes) -> None:
    with contextlib.suppress(DOCUMENTED):
        decode(data, StoreManifest, source="manifest.json")


@settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=mutated(RANK))
def test_rank_manifest_parsing(data: bytes) -> None:
    with contextlib.suppress(DOCUMENTED):
        decode(data, RankManifest, source="rank-00000.json")


@settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated(MANIFEST), raw=st.binary(max_size=64))
def test_opening_and_reading_a_damaged_store(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "store"
    shutil.copytree(_TEMPLATE, path)
    (path / "manifest.json").write_bytes(data if raw[:1] != b"\x00" else raw)
    try:
        store = predstore.open(path)
        for key in store:
            store.read(key)
        store.scan().collect()
    except predstore.PredstoreError:
        pass
