"""PredictionWriter on S3 (the local moto server): two nodes with no shared disk, and a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import predstore
from predict_support import Samples, close, expected_logits, resume_and_check
from predstore.read.verify import verify
from s3_support import free_port

JOB = Path(__file__).resolve().parent.parent / "helpers" / "jobs" / "predict_job.py"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PL_", "LOCAL_RANK"))}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    return {**env, **extra}


@pytest.mark.ddp
@pytest.mark.parametrize("dataset", ["subset", "shuffle"])
def test_two_nodes_without_a_shared_disk_write_one_s3_store(
    s3, tmp_path: Path, dataset: str
) -> None:
    """One process per node (NODE_RANK 0 and 1), each in its own empty directory, gloo on loopback."""
    url = s3.url()
    port = str(free_port())
    nodes = []
    for node in (0, 1):
        cwd = tmp_path / f"node{node}"
        cwd.mkdir()
        env = _env(NODE_RANK=str(node), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE="2")
        args = [
            sys.executable,
            str(JOB),
            url,
            "--num-nodes",
            "2",
            "--samples",
            "23",
            "--batch",
            "4",
        ]
        nodes.append(
            subprocess.Popen(
                [*args, "--shuffle"] if dataset == "shuffle" else [*args, "--dataset", "subset"],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [n.communicate(timeout=300) for n in nodes]
    for n, (_, err) in zip(nodes, outputs, strict=True):
        assert n.returncode == 0, err[-3000:]
    result = json.loads([line for line in outputs[0][0].splitlines() if line.startswith("{")][-1])
    store = predstore.open(url)
    indices = store.indices()
    assert close(store.read("logits", indices), expected_logits(indices))  # labelled right
    cover = store.coverage[0]
    if dataset == "subset":  # root indices, through the Subset, each exactly once
        assert indices.tolist() == list(range(1, 46, 2)) and result["rows"] == 23
    else:  # each rank shuffles on its own: duplicates and gaps, reported as on a local disk
        assert cover.written == 23 and cover.unique + (cover.missing or 0) == 23
        assert cover.duplicates > 0 and "duplicated indices" in result["warnings"][0]
    assert store.manifest.writes[0].world_size == 2
    assert {p.rank for p in store.manifest.parts} == {0, 1}  # node 1's rank manifest was stitched
    assert verify(url, deep=True).ok
    for node in (0, 1):  # predstore left nothing on either node's disk
        assert list((tmp_path / f"node{node}").iterdir()) == []


@pytest.mark.parametrize("crash", ["shard-write:2", "decide:1"])
def test_a_killed_s3_write_is_resumed_writing_every_index_once(
    s3, tmp_path: Path, crash: str
) -> None:
    url = s3.url()
    args = [sys.executable, str(JOB), url, "--samples", "120", "--batch", "8", "--crash", crash]
    job = subprocess.run(  # its own session: the crash point kills its whole process group
        args,
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        start_new_session=True,
    )
    assert job.returncode == -signal.SIGKILL, job.stderr[-3000:]
    try:
        store = predstore.open(url)  # what is visible is complete and right
        assert close(store.read("logits", store.indices()), expected_logits(store.indices()))
    except predstore.StoreNotCommittedError:
        pass
    try:
        predstore.finalize(url)  # recovery: commits what the killed write's rank had committed
    except predstore.StoreNotCommittedError:
        assert crash.startswith("shard")
    assert len(predstore.pending(url, Samples(120))) < 120 or crash.startswith("shard")
    resume_and_check(url, 120)
    assert verify(url, deep=True).ok
    assert s3.server.multipart_uploads(s3.bucket) == []
