"""Damaged data files: every read and ``verify`` answers with a predstore error naming the file.

A store written by :func:`support.write_mixed` is damaged one way per test;
readers must never return wrong values silently, hang, or raise anything but
a :class:`predstore.PredstoreError`, and ``verify`` must report the damage
without raising.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import pytest

import predstore
from predstore.read.verify import verify
from support import write_mixed

pytestmark = pytest.mark.corrupts_manifests


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mixed") / "store"
    write_mixed(path)
    return path


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "store"
    subprocess.run(["cp", "-a", str(template), str(path)], check=True)
    return path


def array_dir(store: Path, key: str) -> Path:
    return next(p for p in store.rglob(key) if (p / "zarr.json").exists())


def shards(store: Path, key: str) -> list[Path]:
    return sorted(p for p in (array_dir(store, key) / "c").rglob("*") if p.is_file())


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


def edit_json(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def read_everything(path: Path) -> None:
    store = predstore.open(path)
    for key in store.schema.keys:
        store.read(key)
    store.scan().collect()


# -- item 1: metadata that is not predstore's layout never reaches a file outside ------


def _plain_layout(doc: dict[str, Any]) -> None:
    doc["chunk_grid"]["configuration"]["chunk_shape"] = [1, 300]
    doc["codecs"] = [{"name": "bytes", "configuration": {"endian": "little"}}]


def test_a_plain_zarr_layout_is_refused_not_followed(store: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(300, 7.0, np.float32).tobytes())
    logits = array_dir(store, "logits")
    edit_json(logits / "zarr.json", _plain_layout)
    (logits / "c" / "0").mkdir(exist_ok=True)
    for chunk in list((logits / "c" / "0").iterdir()):
        chunk.unlink()
    (logits / "c" / "0" / "0").symlink_to(secret)
    opened = predstore.open(store)
    with pytest.raises(predstore.CorruptStoreError, match=r"zarr.json.*not predstore's"):
        opened.read("logits", [0])
    out = tmp_path / "out.csv"
    cli = subprocess.run(
        ["predstore", "export", str(store), str(out), "--format", "csv"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "not predstore's" in cli.stderr, cli.stderr
    assert not out.exists()
    report = verify(store, deep=True)
    assert any("not predstore's" in p for p in report.problems), report.problems


def test_an_unknown_codec_is_a_corrupt_store_error(store: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["codecs"][0]["configuration"]["codecs"][1] = {"name": "lz5", "configuration": {}}

    edit_json(array_dir(store, "mask") / "zarr.json", change)
    with pytest.raises(predstore.CorruptStoreError, match=r"mask/zarr.json.*lz5"):
        predstore.open(store).read("mask", [0])
    assert any("lz5" in p for p in verify(store).problems)


def test_a_chunk_shape_that_differs_from_the_manifest_is_refused(store: Path) -> None:
    edit_json(
        array_dir(store, "logits") / "zarr.json",
        lambda d: d["codecs"][0]["configuration"].update(chunk_shape=[4, 300]),
    )
    with pytest.raises(predstore.CorruptStoreError, match=r"logits/zarr.json"):
        predstore.open(store).read("logits", [0])


def _chunks_of(shard: Path, count: int) -> list[bytes]:
    data = shard.read_bytes()
    table = np.frombuffer(data[-4 - 16 * count : -4], "<u8").reshape(count, 2)
    return [data[int(o) : int(o) + int(n)] for o, n in table]


def _shard_of(chunks: list[bytes]) -> bytes:
    offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    table = np.stack([offsets, [len(c) for c in chunks]], axis=1).astype("<u8").tobytes()
    return b"".join(chunks) + table + np.array([google_crc32c.value(table)], "<u4").tobytes()


def test_a_chunk_of_the_wrong_size_is_a_corrupt_store_error(store: Path) -> None:
    shard = shards(store, "mask")[0]
    chunks = _chunks_of(shard, 16)  # shards of 32 rows, chunks of 2
    wrong = numcodecs.Zstd(level=1).encode(np.zeros(100, np.uint8))  # a sound frame, too short
    if "crc32c" in (array_dir(store, "mask") / "zarr.json").read_text().split('"index_codecs"')[0]:
        wrong += np.array([google_crc32c.value(wrong)], "<u4").tobytes()  # a sound checksum
    shard.write_bytes(_shard_of([wrong, *chunks[1:]]))
    edit_json(
        store / "manifest.json",
        lambda d: [
            a["files"].update({k: shard.stat().st_size for k in a["files"] if k.endswith("c/0/0")})
            for a in d["arrays"]
            if a["key"] == "mask"
        ],
    )
    with pytest.raises(predstore.CorruptStoreError, match=r"mask/c/0/0.*decodes to 100 bytes"):
        predstore.open(store).read("mask", [0])
    dataset = predstore.open(store).dataset(["mask"], as_torch=False)
    with pytest.raises(predstore.CorruptStoreError, match=r"mask/c/0/0"):
        dataset[0]
    assert any("mask/c/0/0" in p for p in verify(store, deep=True).problems)


def test_a_damaged_zstd_ragged_shard_is_a_corrupt_store_error(store: Path) -> None:
    shard = shards(store, "tokens")[0]
    flip(shard, 20)
    with pytest.raises(predstore.CorruptStoreError, match=r"tokens/c/0"):
        predstore.open(store).read("tokens")
    assert any("tokens/c/0" in p for p in verify(store, deep=True).problems)


@pytest.mark.parametrize("field", ["shards", "chunks"])
def test_a_zero_chunk_length_in_the_manifest_is_refused(store: Path, field: str) -> None:
    for manifest in [store / "manifest.json", *(store / "_commits").glob("*.json")]:
        edit_json(manifest, lambda d: d["arrays"][0].update({field: [0, 300]}))
    with pytest.raises(predstore.CorruptStoreError, match="manifest.json is damaged"):
        read_everything(store)
    assert not verify(store, deep=True).ok


def test_a_deeply_nested_manifest_is_refused(store: Path) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    for manifest in [store / "manifest.json", *(store / "_commits").glob("*.json")]:
        text = manifest.read_text()
        manifest.write_text(
            text.replace('"provenance": {', f'"x": {nested}, "provenance": {{', 1).replace(
                '"provenance":{', f'"x":{nested},"provenance":{{', 1
            )
        )
    with pytest.raises(predstore.CorruptStoreError, match="manifest.json"):
        predstore.open(store)
    assert not verify(store).ok


def test_a_damaged_parquet_footer_is_a_corrupt_store_error(store: Path) -> None:
    part = next(store.rglob("*.parquet"))
    data = bytearray(part.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer : -8 - footer // 2] = b"\xff" * (footer - footer // 2)
    part.write_bytes(bytes(data))  # the same size, half the footer garbage
    with pytest.raises(predstore.CorruptStoreError, match=part.name):
        read_everything(store)
    assert any(part.name in p for p in verify(store, deep=True).problems)


def as_unprivileged(command: list[str]) -> list[str]:
    """``command`` run without the power to read files whatever their mode (root has it)."""
    if os.geteuid() != 0:
        return command
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be denied")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]


def test_permission_denied_is_named_and_verify_reports_it(store: Path) -> None:
    part = next(store.rglob("*.parquet"))
    part.chmod(0)
    code = f"import predstore; predstore.open({str(store)!r}).read('pred', [0])"
    run = subprocess.run(
        as_unprivileged([sys.executable, "-c", code]), capture_output=True, text=True
    )
    assert "predstore.errors.StorePermissionError" in run.stderr, run.stderr
    assert part.name in run.stderr and "permission" in run.stderr
    cli = subprocess.run(
        as_unprivileged(["predstore", "verify", str(store), "--deep"]),
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr + cli.stdout
    assert "permission" in cli.stdout + cli.stderr, cli.stdout + cli.stderr


# -- FIFOs and sizes: nothing blocks, nothing unbounded is read --------------------------


def finishes(call: Callable[[], Any], fifo: Path, seconds: float = 5.0) -> BaseException | None:
    """What ``call`` raised (``None`` if nothing); fails the test if it blocks on ``fifo``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as e:  # the caller judges it
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        with contextlib.suppress(OSError):  # open the writing end: the blocked reader returns
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(seconds)
        pytest.fail(f"blocked on the FIFO {fifo}")
    return outcome[0]


def _fifo_in_place_of(path: Path) -> Path:
    path.unlink()
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "where",
    [
        lambda s: s / "manifest.json",
        lambda s: array_dir(s, "logits") / "zarr.json",
        lambda s: next(s.rglob("*.parquet")),
        lambda s: shards(s, "logits")[0],
    ],
    ids=["manifest", "zarr.json", "part", "shard"],
)
def test_a_fifo_never_blocks_a_reader_or_verify(store: Path, where: Callable[[Path], Path]) -> None:
    fifo = _fifo_in_place_of(where(store))
    error = finishes(lambda: read_everything(store), fifo)
    assert isinstance(error, predstore.CorruptStoreError), repr(error)
    assert "not a regular file" in str(error) and fifo.name in str(error)
    report: list[Any] = []
    assert finishes(lambda: report.append(verify(store, deep=True)), fifo) is None
    assert any("not a regular file" in p for p in report[0].problems), report[0].problems


def test_an_oversized_manifest_is_refused(store: Path) -> None:
    from predstore.format.manifest import MAX_MANIFEST_BYTES

    with open(store / "manifest.json", "r+b") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse: no disk is used
    with pytest.raises(predstore.CorruptStoreError, match=r"manifest.json.*larger than"):
        predstore.open(store)


def test_an_oversized_zarr_json_is_refused(store: Path) -> None:
    with open(array_dir(store, "logits") / "zarr.json", "r+b") as f:
        f.truncate(64 << 20)
    with pytest.raises(predstore.CorruptStoreError, match=r"zarr.json.*larger than"):
        predstore.open(store).read("logits", [0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataloaders": []}, "0 dataloaders"),
        ({"dataloaders": [0, 1]}, "2 dataloaders"),
        ({"index_max": 1000}, "index_max 1000 .expected 9."),
    ],
)
def test_a_stepped_part_entry_that_contradicts_itself_is_refused(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "stepped.pstore"
    with predstore.StoreWriter(path) as writer:
        writer.write({"pred": np.arange(10)}, indices=np.arange(10))
    edit_json(path / "manifest.json", lambda d: d["parts"][0].update(change))
    assert json.loads((path / "manifest.json").read_text())["parts"][0]["index_step"] == 1
    with pytest.raises(predstore.CorruptStoreError, match=message):
        read_everything(path)
    with pytest.raises(predstore.CorruptStoreError, match=message):
        predstore.open(path).row(3)  # found by the part's index range, not the row index
    assert not verify(path, deep=True).ok


def test_a_part_whose_footer_gives_another_type_is_a_corrupt_store_error(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "typed.pstore"
    with predstore.StoreWriter(path) as writer:
        writer.write({"pred": np.arange(10), "emb": np.ones((10, 64), np.float32)}, np.arange(10))
    part = path / json.loads((path / "manifest.json").read_text())["parts"][0]["path"]
    table = pq.read_table(part)
    retyped = table.set_column(
        table.schema.get_field_index("pred"), "pred", table.column("pred").cast("float64")
    )
    pq.write_table(retyped, part)  # the sizes and the pages agree; only the type is wrong

    def same_size_no_checksum(doc: dict[str, Any]) -> None:
        doc["parts"][0].update(bytes=part.stat().st_size, crc32c=None)

    for manifest in [path / "manifest.json", *(path / "_commits").glob("*.json")]:
        edit_json(manifest, same_size_no_checksum)
    store = predstore.open(path)
    with pytest.raises(predstore.CorruptStoreError, match="column 'pred' as double"):
        store.read("pred", [3])
    with pytest.raises(predstore.CorruptStoreError, match="column 'pred' as double"):
        store.dataset(["pred", "emb"])[3]
    assert not verify(path).ok


def test_an_array_of_a_key_the_schema_does_not_store_in_zarr_is_refused(store: Path) -> None:
    for manifest in [store / "manifest.json", *(store / "_commits").glob("*.json")]:
        edit_json(manifest, lambda d: d["arrays"][0].update(key="../x"))
    with pytest.raises(predstore.CorruptStoreError, match="key '../x'"):
        predstore.open(store)
    assert not verify(store, deep=True).ok
