"""Stores on S3, against a local S3 server (moto, in its own process), in one run:

1. the client: uploading the same objects with obstore (predstore's client) and boto3;
2. W1 and W3 written through ``trainer.predict`` to ``s3://``, against uploading the same
   bytes as the same number of objects with the same client (and the server's ceiling: one
   large object);
3. reading 10 random rows of W1: bytes fetched against the inner chunks that hold them plus
   the shard indexes, and the requests of a sequential pass;
4. opening a store of 1,000 parts: requests made.

    python -m benchmarks.object_store [--w1 50000] [--w3 200000] [--parts 1000] [--reps 3]

Bytes and requests are counted by a proxy on loopback in front of the server (tests/helpers/
s3_support.py); times are medians over ``--reps``. The server is Python and shares the CPUs
with the writer, so its ceiling is reported beside every throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import numpy as np

from benchmarks.common import ROOT, Workload, batches, machine, predict_trainer, table, w1, w3

sys.path.insert(0, str(ROOT.parent / "tests" / "helpers"))
from s3_support import FaultProxy, free_port

KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}


class Server:
    """moto's S3 server in its own process (so that it does not share the writer's GIL)."""

    def __init__(self) -> None:
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import urllib.request

        for _ in range(200):
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                break
            except OSError:
                time.sleep(0.1)

    def bucket(self) -> str:
        import urllib.request

        name = f"bench-{uuid.uuid4().hex[:12]}"
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"))
        return name

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


def _client(bucket: str) -> Any:
    from obstore.store import from_url

    return from_url(f"s3://{bucket}", client_options={"allow_http": True})


def _objects(bucket: str, prefix: str) -> list[int]:
    import obstore

    return [o["size"] for batch in obstore.list(_client(bucket), prefix) for o in batch]


def _upload_obstore(bucket: str, sizes: list[int]) -> float:
    import obstore

    client, data = _client(bucket), os.urandom(max(sizes))
    started = time.perf_counter()
    for i, size in enumerate(sizes):
        obstore.put(client, f"raw-{uuid.uuid4().hex[:6]}/{i}", memoryview(data)[:size])
    return time.perf_counter() - started


def _upload_boto3(endpoint: str, bucket: str, sizes: list[int]) -> float | None:
    try:
        import boto3
    except ImportError:
        return None
    client = boto3.client("s3", endpoint_url=endpoint, region_name=KEYS["AWS_REGION"])
    data = os.urandom(max(sizes))
    started = time.perf_counter()
    for i, size in enumerate(sizes):
        client.put_object(Bucket=bucket, Key=f"boto-{i}", Body=data[:size])
    return time.perf_counter() - started


def _predict(workload: Workload, url: str) -> float:
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, Dataset

    import predstore

    prepared = list(batches(workload))

    class Batches(Dataset):
        def __len__(self) -> int:
            return len(prepared)

        def __getitem__(self, i: int) -> int:
            return i

    class Replay(pl.LightningModule):
        def predict_step(self, batch: Any) -> dict[str, Any]:
            out = prepared[int(batch)]
            values = {k: torch.from_numpy(v) for k, v in out.items() if k not in ("name",)}
            return {**values, "name": out["name"]}

    writer = predstore.PredictionWriter(url, name_key="name", index_key="index")
    trainer = predict_trainer([writer])
    started = time.perf_counter()
    trainer.predict(Replay(), DataLoader(Batches(), batch_size=None), return_predictions=False)
    return time.perf_counter() - started


def writes(
    server: Server, workloads: list[Workload], reps: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, clients = [], {}
    for workload in workloads:
        runs: dict[str, list[float]] = {"predstore": [], "raw": []}
        sizes: list[int] = []
        for _ in range(reps):
            bucket = server.bucket()
            runs["predstore"].append(_predict(workload, f"s3://{bucket}/store.pstore"))
            sizes = _objects(bucket, "store.pstore")
            runs["raw"].append(_upload_obstore(server.bucket(), sizes))
        stored = sum(sizes)
        predstore_s, raw_s = statistics.median(runs["predstore"]), statistics.median(runs["raw"])
        rows.append(
            {
                "workload": workload.name,
                "samples": workload.samples,
                "payload_mb": workload.payload / 1e6,
                "stored_mb": stored / 1e6,
                "objects": len(sizes),
                "predstore_s": predstore_s,
                "raw_s": raw_s,
                "ratio": raw_s / predstore_s,
            }
        )
        if not clients:
            boto = [_upload_boto3(server.endpoint, server.bucket(), sizes) for _ in range(reps)]
            obst = [_upload_obstore(server.bucket(), sizes) for _ in range(reps)]
            clients = {
                "objects": len(sizes),
                "mb": stored / 1e6,
                "obstore_s": statistics.median(obst),
                "boto3_s": statistics.median(b for b in boto if b is not None) if boto[0] else None,
            }
    ceiling = [_upload_obstore(server.bucket(), [256 << 20]) for _ in range(reps)]
    clients["ceiling_mb_s"] = 256 * 1.048576 / statistics.median(ceiling)
    return rows, clients


def reads(server: Server, samples: int) -> dict[str, Any]:
    """Random and sequential reads of a W1 store, counted at a proxy."""
    import predstore

    bucket = server.bucket()
    _predict(w1(samples), f"s3://{bucket}/store.pstore")
    proxy = FaultProxy(server.endpoint)
    options = {"aws_endpoint_url": proxy.endpoint}
    store = predstore.open(f"s3://{bucket}/store.pstore", storage_options=options)
    rng = np.random.default_rng(0)
    wanted = np.sort(rng.choice(len(store), 10, replace=False))
    before = len(proxy.log)
    store.read("logits", wanted)
    random = proxy.log[before:]
    entry = next(a for a in store.manifest.arrays if a.key == "logits")
    reader = store._arrays[(entry.key, entry.write_id, entry.rank)]
    layout = reader._layout
    needed = set()
    for position in wanted:  # the rank's array position of each row, through its part
        part = store.rows.part[store.rows.locate([int(position)])[0]]
        row = store.rows.row[store.rows.locate([int(position)])[0]]
        needed.add(
            int(store.manifest.parts[part].array_offsets["logits"] + row) // layout.chunk_len
        )
    shards = {c // layout.chunks_per_shard for c in needed}
    chunk_bytes = sum(
        int(reader._indices[c // layout.chunks_per_shard][c % layout.chunks_per_shard, 1])
        for c in needed
    )
    fetched = sum(r.body_bytes for r in random if "/c/" in r.path)
    index_bytes = len(shards) * layout.index_bytes
    shard_size = max(entry.files.values())
    before = len(proxy.log)
    span = min(len(store), 64 * layout.chunk_len)
    store.read("logits", np.arange(span))
    sequential = [r for r in proxy.log[before:] if "/c/" in r.path and r.method == "GET"]
    proxy.stop()
    return {
        "rows": 10,
        "chunks": len(needed),
        "needed_bytes": chunk_bytes + index_bytes,
        "fetched_bytes": fetched,
        "ratio": fetched / (chunk_bytes + index_bytes),
        "largest_shard_bytes": shard_size,
        "requests": len([r for r in random if "/c/" in r.path]),
        "sequential_rows": span,
        "sequential_chunks": -(-span // layout.chunk_len),
        "sequential_requests": len(sequential),
    }


def opening(server: Server, parts: int) -> dict[str, Any]:
    import predstore

    bucket = server.bucket()
    url = f"s3://{bucket}/parts.pstore"
    with predstore.StoreWriter(url, commit_interval=None) as w:
        for p in range(parts):
            w.write({"x": np.arange(p, p + 1)}, np.arange(p, p + 1))
            w.commit()
    proxy = FaultProxy(server.endpoint)
    predstore.open(url, storage_options={"aws_endpoint_url": proxy.endpoint})
    requests = [f"{r.method} {r.path.split('?')[0].rsplit('/', 2)[-2:]}" for r in proxy.log]
    proxy.stop()
    return {"parts": parts, "requests": len(requests), "what": requests}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--w1", type=int, default=50_000)
    parser.add_argument("--w3", type=int, default=200_000)
    parser.add_argument("--parts", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    server = Server()
    os.environ.update(KEYS, AWS_ENDPOINT_URL=server.endpoint)
    try:
        written, clients = writes(server, [w1(args.w1), w3(args.w3)], args.reps)
        read = reads(server, args.w1)
        opened = opening(server, args.parts)
    finally:
        server.stop()
    print(
        table(
            [
                [
                    r["workload"],
                    f"{r['objects']}",
                    f"{r['stored_mb']:.0f} MB",
                    f"{r['predstore_s']:.1f} s ({r['payload_mb'] / r['predstore_s']:.0f} MB/s payload)",
                    f"{r['raw_s']:.1f} s ({r['stored_mb'] / r['raw_s']:.0f} MB/s)",
                    f"{r['ratio']:.2f}x",
                ]
                for r in written
            ],
            [
                "workload",
                "objects",
                "stored",
                "predstore (trainer.predict)",
                "raw upload, same objects",
                "predstore / raw",
            ],
        )
    )
    print(f"\nserver ceiling (one 256 MiB object): {clients['ceiling_mb_s']:.0f} MB/s")
    boto = f"{clients['boto3_s']:.1f} s" if clients.get("boto3_s") else "not installed"
    print(
        f"client: {clients['objects']} objects, {clients['mb']:.0f} MB: obstore {clients['obstore_s']:.1f} s, boto3 {boto}"
    )
    print(
        f"\n10 random rows of W1: {read['fetched_bytes']:,} bytes fetched in {read['requests']} requests, "
        f"{read['needed_bytes']:,} in the {read['chunks']} inner chunks + shard indexes "
        f"({read['ratio']:.2f}x); largest shard {read['largest_shard_bytes']:,} bytes"
    )
    print(
        f"sequential {read['sequential_rows']:,} rows: {read['sequential_requests']} requests "
        f"for {read['sequential_chunks']} inner chunks"
    )
    print(f"open a {opened['parts']}-part store: {opened['requests']} requests {opened['what']}")
    print(
        json.dumps(
            {
                "machine": machine(),
                "writes": written,
                "clients": clients,
                "reads": read,
                "open": opened,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
