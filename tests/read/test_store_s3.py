"""Stores on S3 (the local moto server): every entry point, every mode, the CLI, other readers."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import torch
from torch.utils.data import DataLoader

import predstore
from predstore.errors import ConfigError, StorageError, StoreExistsError
from predstore.format.parquet import read_footer
from predstore.read.verify import verify
from s3_support import CREDENTIALS, REGION

EXE = shutil.which("predstore") or ""
SECRET = "never-shown-secret-0123456789"


def write(url: str, indices: range, *, mode: str = "error", **options: object) -> None:
    with predstore.StoreWriter(url, mode=mode, shard_bytes=64 << 10, **options) as w:  # type: ignore[arg-type]
        for start in range(indices.start, indices.stop, 10):
            idx = np.arange(start, min(start + 10, indices.stop))
            w.write(
                {"emb": np.stack([np.full(300, i, np.float32) for i in idx]), "pred": idx * 2},
                idx,
                names=[f"case-{i}" for i in idx],
            )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [EXE, *args] if EXE else [sys.executable, "-m", "predstore", *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


# -- locations ---------------------------------------------------------------------------


def test_an_unknown_scheme_is_refused_everywhere_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "gs2://bucket/preds.pstore"
    from predstore.lightning.prediction_writer import PredictionWriter

    for attempt in (
        lambda: predstore.StoreWriter(url),
        lambda: PredictionWriter(url),
        lambda: predstore.open(url),
        lambda: predstore.finalize(url),
        lambda: predstore.vacuum(url),
        lambda: predstore.pending(url, list(range(3))),
        lambda: verify(url),
    ):
        with pytest.raises(ConfigError, match="does not know the scheme gs2://"):
            attempt()
    done = cli("info", url)
    assert done.returncode == 1 and "does not know the scheme gs2://" in done.stderr
    assert list(tmp_path.iterdir()) == []  # never a local folder named after the URL


def test_file_urls_are_local_directories(tmp_path: Path) -> None:
    write(f"file://{tmp_path}/s", range(5))
    assert predstore.open(tmp_path / "s").indices().tolist() == list(range(5))
    assert predstore.open(f"file://{tmp_path}/s").parquet_files()[0].startswith(str(tmp_path))


# -- a store on S3 -------------------------------------------------------------------------


def test_write_read_and_analyse_a_store_on_s3(s3) -> None:
    url = s3.url()
    write(url, range(100))
    store = predstore.open(url)
    assert len(store) == 100 and store.path == url
    assert store.read("emb", [7, 93, 0])[:, 0].tolist() == [7.0, 93.0, 0.0]
    assert store.read("pred", names=["case-42"]).tolist() == [84]
    frame = store.scan(sort=True).collect()
    assert frame["pred"].to_list() == [2 * i for i in range(100)]
    assert store.to_pandas()["name"].iloc[99] == "case-99"
    files = store.parquet_files()
    assert files and all(f.startswith(f"{url}/writes/") for f in files)
    assert verify(url, deep=True).ok
    s3.check_manifests()


def test_footers_and_columns_are_read_by_range_never_whole_parts(s3_proxy) -> None:
    url = s3_proxy.url()
    idx = np.arange(4000)
    with predstore.StoreWriter(url) as w:  # one part of ~0.6 MB, mostly random names
        w.write({"pred": idx % 7}, idx, names=[os.urandom(64).hex() for _ in idx])
    store = predstore.open(url)
    part = store.manifest.parts[0]
    log = s3_proxy.proxy.log
    before = len(log)
    assert read_footer(store.fs, part).num_rows == 4000
    footer = log[before:]
    assert [r.method for r in footer] == ["HEAD", "GET"]
    assert footer[1].body_bytes < part.bytes / 4
    before = len(log)
    frame = store.scan(["index", "pred"]).collect()  # the footer check, then polars
    assert frame["pred"].to_list() == (idx % 7).tolist()
    fetched = [r for r in log[before:] if part.path in r.path]
    ours = [r for r in fetched if not r.headers.get("user-agent", "").startswith("polars")]
    assert ours and sum(r.body_bytes for r in ours) < part.bytes / 2
    assert all("range" in {k.lower() for k in r.headers} for r in fetched if r.method == "GET")


def test_scan_gives_polars_the_credentials_and_endpoint_of_storage_options(
    s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3.url()
    write(url, range(20))
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", *CREDENTIALS):
        monkeypatch.delenv(name)
    options = {
        "aws_endpoint_url": s3.endpoint,
        "aws_region": REGION,
        **{k.lower(): v for k, v in CREDENTIALS.items()},
    }
    store = predstore.open(url, storage_options=options)
    assert store.scan(["pred"], sort=True).collect()["pred"].to_list() == [2 * i for i in range(20)]


def test_other_tools_read_exactly_the_committed_parts(s3, tmp_path: Path) -> None:
    """pyarrow, polars and DuckDB (through Arrow) read parquet_files(), local and on S3."""
    import duckdb
    from pyarrow import fs as pafs

    local, url = tmp_path / "s", s3.url()
    for where in (local, url):
        write(where, range(30))
        write(where, range(30, 50), mode="overwrite")  # 30 rows retired, still on storage
    s3fs = pafs.S3FileSystem(
        endpoint_override=s3.endpoint,
        scheme="http",
        region=REGION,
        access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    for where in (local, url):
        files = predstore.open(where).parquet_files()
        on_s3 = str(where).startswith("s3://")
        arrow = (
            ds.dataset([f.removeprefix("s3://") for f in files], filesystem=s3fs)
            if on_s3
            else ds.dataset(files)
        ).to_table()
        assert sorted(arrow["index"].to_pylist()) == list(range(30, 50))
        frame = pl.scan_parquet(files).collect()  # credentials from the environment
        assert sorted(frame["index"].to_list()) == list(range(30, 50))
        rows = duckdb.sql("select count(*), min(index) from arrow").fetchall()
        assert rows == [(20, 30)]
        printed = cli("parts", str(where))
        assert printed.returncode == 0 and printed.stdout.split() == files


def test_modes_finalize_pending_and_vacuum_on_s3(s3) -> None:
    url = s3.url()
    write(url, range(20))
    with pytest.raises(StoreExistsError, match="already holds a committed store"):
        predstore.StoreWriter(url)
    write(url, range(20, 30), mode="append")
    assert predstore.open(url).indices().tolist() == list(range(30))
    # A write that dies: its committed rows wait in its rank manifest.
    with pytest.raises(RuntimeError, match="died"), predstore.StoreWriter(url, mode="resume") as w:
        w.write(
            {"emb": np.ones((5, 300), np.float32), "pred": np.arange(5)},
            np.arange(30, 35),
            names=list("abcde"),
        )
        w.commit()
        raise RuntimeError("the job died")
    left = predstore.pending(url, list(range(40)))
    assert list(left.indices) == list(range(35, 40))
    manifest = predstore.finalize(url)
    assert manifest.rows == 35
    write(url, range(5), mode="overwrite")
    assert len(predstore.open(url)) == 5
    assert len(predstore.vacuum(url, retention=0)) == 3
    assert verify(url, deep=True).ok
    s3.check_manifests()


def test_store_commands_on_s3_and_no_secret_anywhere(s3, tmp_path: Path) -> None:
    url = s3.url()
    options = {"aws_secret_access_key": SECRET}  # moto accepts any key; it must never be shown
    write(url, range(12), storage_options=options)
    store = predstore.open(url, storage_options=options)
    assert SECRET not in repr(store) and SECRET not in repr(store.fs)
    info = cli("info", url)
    assert info.returncode == 0 and url in info.stdout
    assert cli("verify", url, "--deep").returncode == 0
    assert cli("finalize", url).returncode == 0
    out = tmp_path / "rows.parquet"
    assert cli("export", url, str(out)).returncode == 0
    assert pa.parquet.read_table(out).num_rows == 12
    assert cli("vacuum", url, "--retention", "0").returncode == 0
    for command in (info,):
        assert SECRET not in command.stdout + command.stderr
    import obstore
    from obstore.store import from_url

    client = from_url(f"s3://{s3.bucket}", client_options={"allow_http": True})
    for key in s3.keys(""):
        assert SECRET.encode() not in bytes(obstore.get(client, key).bytes()), key


# -- what reading costs ------------------------------------------------------------------------


def test_opening_costs_the_same_few_requests_whatever_the_number_of_parts(s3_proxy) -> None:
    counts = []
    for parts in (1, 12):
        url = s3_proxy.url(f"p{parts}.pstore")
        with predstore.StoreWriter(url) as w:
            for p in range(parts):
                w.write({"x": np.arange(p * 3, p * 3 + 3)}, np.arange(p * 3, p * 3 + 3))
                w.commit()
        assert len(predstore.open(url).manifest.parts) == parts
        before = len(s3_proxy.proxy.log)
        predstore.open(url)
        requests = s3_proxy.proxy.log[before:]
        counts.append(len(requests))
        assert all(r.method == "GET" and "list-type" not in r.path for r in requests)  # no listing
    assert counts[0] == counts[1] <= 3


def test_random_rows_fetch_only_their_inner_chunks(s3_proxy) -> None:
    url = s3_proxy.url()
    rows = np.random.default_rng(1).random((4096, 512), dtype=np.float32)  # 8 MiB, one shard
    with predstore.StoreWriter(url, chunk_bytes=64 << 10, codec="none") as w:
        w.write({"emb": rows}, np.arange(4096))
    store = predstore.open(url)
    shard = next(iter(store.manifest.arrays[0].files.values()))
    wanted = np.array([5, 700, 701, 1500, 2222, 3000, 3100, 3333, 4000, 4095])
    before = len(s3_proxy.proxy.log)
    got = store.read("emb", wanted)
    fetched = sum(r.body_bytes for r in s3_proxy.proxy.log[before:] if "/c/" in r.path)
    assert np.array_equal(got, rows[wanted])
    chunk = 64 << 10
    chunks_needed = len({int(i) * 2048 // chunk for i in wanted})  # 2 KiB rows
    entry = store.manifest.arrays[0]
    index = 16 * (entry.shards[0] // entry.chunks[0]) + 4  # 16 bytes per inner chunk, and a crc
    assert fetched <= 1.5 * (chunks_needed * chunk + index)
    assert fetched < shard / 4  # never the whole shard


# -- torch datasets --------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["fork", "forkserver", "spawn"])
def test_datasets_in_dataloader_workers_make_their_own_clients(s3, context: str) -> None:
    url = s3.url()
    write(url, range(40))
    store = predstore.open(url)  # the parent has used obstore before the workers start
    dataset = store.dataset(["emb", "pred"], cache_bytes=0)
    assert pickle.loads(pickle.dumps(dataset))[3]["pred"] == 6
    loader = DataLoader(dataset, batch_size=8, num_workers=2, multiprocessing_context=context)
    seen = torch.cat([batch["pred"] for batch in loader])
    assert sorted(seen.tolist()) == [2 * i for i in range(40)]
    sequential = store.sequential_dataset(["emb", "pred"], batch_size=16)
    batches = DataLoader(
        sequential, batch_size=None, num_workers=2, multiprocessing_context=context
    )
    rows = [
        (int(p), float(e[0])) for b in batches for p, e in zip(b["pred"], b["emb"], strict=True)
    ]
    assert sorted(rows) == [(2 * i, float(i)) for i in range(40)]


def test_both_datasets_take_a_url_and_storage_options(s3) -> None:
    url = s3.url()
    write(url, range(12))
    options = {"aws_endpoint_url": s3.endpoint}
    mapped = predstore.PredictionDataset(url, ["pred"], storage_options=options)
    assert int(mapped[5]["pred"]) == 10
    passes = predstore.SequentialPredictionDataset(
        url, ["pred"], batch_size=4, storage_options=options
    )
    assert sum(len(batch["pred"]) for batch in passes) == 12
    with pytest.raises(ConfigError, match="pass them to predstore.open"):
        predstore.PredictionDataset(predstore.open(url), storage_options=options)


def test_a_forked_process_reads_but_refuses_to_write(s3) -> None:
    url = s3.url()
    write(url, range(16))
    parent = predstore.open(url)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        rows, refused = pool.apply_async(_read_then_write_in_a_forked_child, (url, parent)).get(120)
    assert rows == list(range(0, 32, 2))
    assert "forked" in refused and "forkserver" in refused


def _read_then_write_in_a_forked_child(url: str, parent: predstore.Store) -> tuple[list[int], str]:
    rows = predstore.open(url).read("pred", np.arange(16)).tolist()  # not scan(): polars'
    # own runtime does not survive a fork either, once the parent has used it
    assert parent.read("emb", [3])[0][0] == 3
    try:
        write(url, range(16, 20), mode="append")
    except StorageError as e:
        return rows, str(e)
    return rows, ""


def test_storage_options_are_a_write_option_of_both_writers(s3) -> None:
    from predstore.lightning.prediction_writer import PredictionWriter

    options = predstore.WriteOptions(storage_options={"aws_secret_access_key": SECRET})
    assert SECRET not in repr(options)
    assert PredictionWriter(s3.url(), options).options.storage_options == options.storage_options
    with predstore.StoreWriter(s3.url(), options) as w:
        w.write({"pred": np.arange(3)}, np.arange(3))
    assert len(predstore.open(s3.url())) == 3
    with pytest.raises(ConfigError, match="storage_options must be a mapping"):
        predstore.WriteOptions(storage_options="aws_region=x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="object stores"):
        predstore.StoreWriter("local.pstore", options)
