"""Fuzzing what readers take from disk: manifests, ``zarr.json``, data files, and indices.

Whatever the bytes, only predstore's documented errors escape, ``verify``
never raises, and a data file changed without changing its size is always
caught by a checksum.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import predstore
from predstore.format.manifest import RankManifest, StoreManifest, decode
from predstore.read.verify import verify
from support import write_mixed, write_ranks

pytestmark = pytest.mark.corrupts_manifests

_TEMPLATE = Path(tempfile.mkdtemp(prefix="predstore-fuzz-")) / "store"
write_ranks(_TEMPLATE, [list(range(20)), list(range(20, 33))], shard_bytes=8 * 1200)
MANIFEST = json.loads((_TEMPLATE / "manifest.json").read_text())
RANK = json.loads(next(_TEMPLATE.rglob("rank-00000.json")).read_text())
_APPENDED = _TEMPLATE.parent / "appended"
write_ranks(_APPENDED, [list(range(10))], shard_bytes=8 * 1200)
write_ranks(_APPENDED, [list(range(10, 15))], shard_bytes=8 * 1200, mode="append")
RECORD = json.loads((_APPENDED / "_commits" / "0000000002.json").read_text())

NESTED = '"nested beyond recursion"'
"""Stands for JSON nested deeper than any recursive decoder goes (spliced in as text)."""

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
        action = draw(st.sampled_from(["replace", "delete", "path", "nest"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "nest":  # deeper than any recursive decoder goes
            parent[where[-1]] = json.loads(NESTED)
        elif action == "path":
            parent[where[-1]] = draw(
                st.sampled_from(["../x", "/etc/passwd", "a/../../b", "", ".", "writes/../../.."])
            )
        else:
            parent[where[-1]] = draw(json_values)
    data = json.dumps(doc).replace(NESTED, "[" * 100_000 + "]" * 100_000).encode()
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
        for key in store.schema.keys:
            store.read(key)
        store.scan().collect()
    except predstore.PredstoreError:
        pass
    verify(path, deep=True)  # reports, never raises


# -- data files: damaged bytes are caught by a checksum, and only predstore errors escape --

_MIXED = _TEMPLATE.parent / "mixed"
write_mixed(_MIXED)
_DATA_FILES = sorted(
    str(p.relative_to(_MIXED))
    for p in _MIXED.rglob("*")
    if p.is_file() and (p.suffix == ".parquet" or "c" in p.relative_to(_MIXED).parts)
)
ZARR_JSON = sorted(str(p.relative_to(_MIXED)) for p in _MIXED.rglob("zarr.json"))


on_copies_of_the_store = settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _copy_of_mixed(factory: pytest.TempPathFactory) -> Path:
    path = factory.mktemp("fuzz") / "store"
    shutil.copytree(_MIXED, path)
    return path


def _read_all(path: Path) -> None:
    store = predstore.open(path)
    for key in store.schema.keys:
        store.read(key)
        store.read(key, [5, 1, 63])
    store.scan().collect()
    dataset = store.dataset(["logits", "mask", "tokens"], as_torch=False, cache_bytes=0)
    dataset[3]


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with 1 to 4 bytes changed, or a range swapped with another of the same length."""
    out = bytearray(data)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(out) - 1))
            out[at] ^= draw(st.integers(1, 255))
    else:
        length = draw(st.integers(1, max(1, len(out) // 4)))
        a = draw(st.integers(0, len(out) - 2 * length))
        b = draw(st.integers(a + length, len(out) - length))
        out[a : a + length], out[b : b + length] = out[b : b + length], out[a : a + length]
    return bytes(out)


@on_copies_of_the_store
@given(which=st.sampled_from(_DATA_FILES), data=st.data())
def test_any_damage_to_a_data_file_is_caught(
    tmp_path_factory: pytest.TempPathFactory, which: str, data: st.DataObject
) -> None:
    path = _copy_of_mixed(tmp_path_factory)
    original = (path / which).read_bytes()
    damaged = data.draw(damaged_bytes(original))
    (path / which).write_bytes(damaged)
    with contextlib.suppress(predstore.PredstoreError):
        _read_all(path)
    report = verify(path, deep=True)
    if damaged != original:  # every size still matches: only a checksum can tell
        assert not report.ok, which
        assert any(Path(which).name in p for p in report.problems), report.problems


@on_copies_of_the_store
@given(which=st.sampled_from(ZARR_JSON), data=st.data())
def test_any_zarr_json_is_read_or_refused(
    tmp_path_factory: pytest.TempPathFactory, which: str, data: st.DataObject
) -> None:
    path = _copy_of_mixed(tmp_path_factory)
    (path / which).write_bytes(data.draw(mutated(json.loads((path / which).read_bytes()))))
    with contextlib.suppress(predstore.PredstoreError):
        _read_all(path)
    verify(path, deep=True)


_STORE = predstore.open(_MIXED)
indices = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats()
    | st.text(max_size=3)
    | st.lists(st.integers(-5, 70), max_size=5),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "150")), deadline=None)
@given(asked=indices)
def test_read_takes_integer_indices_only(asked: Any) -> None:
    if asked is None:
        return  # read(key, None) reads every row
    try:
        values = _STORE.read("prob", asked)
    except (predstore.InvalidBatchError, predstore.MissingRowsError):
        return
    flat = np.asarray(asked).reshape(-1)
    assert flat.dtype.kind in "iu" or flat.size == 0, asked  # nothing else was taken as rows
    assert len(values) == flat.size


@settings(
    max_examples=int(os.environ.get("PREDSTORE_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated(RECORD))
def test_a_damaged_next_commit_record(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    """A newer record than the checkpoint, damaged: readers, verify and finalize raise only ours."""
    path = tmp_path_factory.mktemp("fuzz") / "store"
    shutil.copytree(_APPENDED, path)
    next_record = data.replace(b'"generation": 2', b'"generation": 3')
    (path / "_commits" / "0000000003.json").write_bytes(next_record)
    try:
        store = predstore.open(path)
        for key in store.schema.keys:
            store.read(key)
    except predstore.PredstoreError:
        pass
    verify(path)
    with contextlib.suppress(predstore.PredstoreError):
        predstore.finalize(path)
