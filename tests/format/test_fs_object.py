"""ObjectFileSystem on a local S3 server (moto), and the locations filesystem_for accepts."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import predstore
from predstore.errors import CommitConflictError, ConfigError, StorageError
from predstore.format import commit as commits
from predstore.format import history, layout
from predstore.format.fs import LocalFileSystem, ObjectFileSystem, filesystem_for
from s3_support import Fault, put_to

FAST = {"max_retries": 2, "retry_timeout": 5, "connect_timeout": "1s", "timeout": "2s"}


# -- locations -------------------------------------------------------------------------


def test_paths_and_file_urls_are_local_and_s3_urls_are_object_stores(tmp_path: Path, s3) -> None:
    assert isinstance(filesystem_for(tmp_path / "a"), LocalFileSystem)
    fs = filesystem_for(f"file://{tmp_path}/a")
    assert isinstance(fs, LocalFileSystem) and fs.root == str(tmp_path / "a")
    assert isinstance(filesystem_for(s3.url()), ObjectFileSystem)
    assert filesystem_for(s3.url() + "/").root == s3.url()


@pytest.mark.parametrize("url", ["gs2://bucket/x", "http://host/x", "hdfs://nn/x", "S4://b/x"])
def test_an_unknown_scheme_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="does not know the scheme"):
        filesystem_for(url)


def test_storage_options_on_a_local_path_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="object stores"):
        filesystem_for(tmp_path, storage_options={"aws_region": "x"})


def test_a_url_without_a_bucket_is_refused() -> None:
    with pytest.raises(ConfigError, match="names no bucket"):
        filesystem_for("s3:///prefix")


def test_an_unknown_storage_option_names_the_key_never_a_value(s3) -> None:
    with pytest.raises(ConfigError, match="not_an_option") as caught:
        filesystem_for(s3.url(), storage_options={"not_an_option": "TOP-SECRET-VALUE"})
    assert "TOP-SECRET-VALUE" not in str(caught.value)


def test_repr_and_pickle_keep_the_secret_out_of_sight(s3) -> None:
    import pickle

    secret = "s3cr3t-never-shown"
    fs = filesystem_for(s3.url(), storage_options={"aws_secret_access_key": secret})
    assert secret not in repr(fs) and secret not in str(fs)
    clone = pickle.loads(pickle.dumps(fs))
    assert isinstance(clone, ObjectFileSystem) and clone.root == fs.root


# -- the contract on S3 ------------------------------------------------------------------


def test_the_file_system_contract_on_s3(s3) -> None:
    fs = filesystem_for(s3.url())
    assert not fs.exists("manifest.json") and fs.list("") == []
    fs.replace("a/b.json", b"one")
    fs.replace("a/b.json", b"two")
    assert fs.read_bytes("a/b.json") == b"two" and fs.size("a/b.json") == 3
    assert fs.put_if_absent("a/c.json", b"x") is True
    assert fs.put_if_absent("a/c.json", b"y") is False
    assert fs.read_bytes("a/c.json") == b"x"
    with fs.open_atomic("a/d.bin") as f:
        f.write(b"0123456789")
        assert f.tell() == 10
    assert fs.read_range("a/d.bin", 2, 3) == b"234"
    assert fs.read_ranges("a/d.bin", [0, 8], [2, 2]) == [b"01", b"89"]
    assert fs.list("") == ["a"] and fs.list("a") == ["b.json", "c.json", "d.bin"]
    assert fs.exists("a") and fs.exists("a/d.bin")
    with pytest.raises(FileNotFoundError, match=r"s3://.*/a/missing"):
        fs.read_bytes("a/missing")
    fs.delete_tree("a")
    fs.delete_tree("nothing/here")
    assert fs.list("") == [] and s3.keys() == []


def test_a_failed_upload_leaves_nothing_visible_and_no_multipart_upload(s3) -> None:
    fs = filesystem_for(s3.url())
    block = os.urandom(1 << 20)
    with pytest.raises(RuntimeError, match="died"), fs.open_atomic("big.bin") as f:
        for _ in range(20):  # 20 MiB: past the upload buffer, so a multipart upload is under way
            f.write(block)
        raise RuntimeError("the writer died")
    assert s3.keys() == []
    assert s3.server.multipart_uploads(s3.bucket) == []


def test_a_large_upload_appears_whole(s3) -> None:
    fs = filesystem_for(s3.url())
    data = os.urandom((20 << 20) + 123)
    with fs.open_atomic("big.bin") as f:
        for i in range(0, len(data), 3 << 20):
            f.write(data[i : i + (3 << 20)])
    assert fs.size("big.bin") == len(data)
    assert fs.read_range("big.bin", len(data) - 200, 200) == data[-200:]


def test_two_committers_racing_exactly_one_wins(s3) -> None:
    fs = filesystem_for(s3.url())
    won: list[bool] = []
    barrier = threading.Barrier(8)

    def race(n: int) -> None:
        mine = filesystem_for(s3.url())
        barrier.wait()
        won.append(mine.put_if_absent(layout.commit_record(1), f"committer {n}".encode()))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]
    assert fs.read_bytes(layout.commit_record(1)).startswith(b"committer ")


def test_a_second_store_commit_of_one_generation_is_a_conflict(s3) -> None:
    with predstore.StoreWriter(s3.url()) as w:
        w.write({"x": np.arange(3)}, np.arange(3))
    fs = filesystem_for(s3.url())
    manifest = commits.committed(fs)
    assert manifest is not None
    with pytest.raises(CommitConflictError, match="another process committed generation 1"):
        history.commit(
            fs, None, manifest, replaces=True
        )  # generation 1 again, from "another" committer
    assert len(predstore.open(s3.url())) == 3


def test_replace_if_is_a_conditional_put_on_the_etag_read(s3) -> None:
    fs = filesystem_for(s3.url())
    fs.replace("manifest.json", b"generation 1")
    data, version = fs.read_versioned("manifest.json")
    assert data == b"generation 1"
    assert fs.replace_if("manifest.json", b"generation 2", version)
    assert not fs.replace_if("manifest.json", b"generation 1 again", version)  # a stale version
    assert fs.read_bytes("manifest.json") == b"generation 2"
    assert not fs.replace_if("absent.json", b"x", version)


# -- faults -----------------------------------------------------------------------------


def test_503_slowdowns_are_retried(s3_proxy) -> None:
    fault = s3_proxy.proxy.add(Fault("503", lambda *_: True, nth=1, times=3))
    with predstore.StoreWriter(s3_proxy.url()) as w:
        w.write({"x": np.arange(5)}, np.arange(5))
    assert fault.fired == 3
    assert predstore.open(s3_proxy.url()).indices().tolist() == list(range(5))


def test_a_commit_whose_answer_was_lost_is_recognised_as_ours(s3_proxy) -> None:
    """The conditional put lands, its answer is dropped, the retry gets 412: the bytes say it was ours."""
    fault = s3_proxy.proxy.add(Fault("drop_response", put_to("_commits/00", conditional=True)))
    url = s3_proxy.url()
    with predstore.StoreWriter(url) as w:
        w.write({"x": np.arange(4)}, np.arange(4))
    assert fault.fired == 1
    puts = [r for r in s3_proxy.proxy.log if r.method == "PUT" and "_commits/00" in r.path]
    assert len(puts) >= 2 and puts[-1].status == 412  # the retry found the record in place
    store = predstore.open(url)
    assert store.manifest.generation == 1 and store.indices().tolist() == [0, 1, 2, 3]


def test_a_service_that_ignores_conditional_puts_is_refused_at_the_first_commit(s3_proxy) -> None:
    s3_proxy.proxy.add(Fault("ignore_condition", put_to("", conditional=True), times=10**6))
    with (
        pytest.raises(StorageError, match="ignores conditional puts"),
        predstore.StoreWriter(s3_proxy.url()) as w,
    ):
        w.write({"x": np.arange(4)}, np.arange(4))
    assert not [k for k in s3_proxy.keys("") if "/_commits/0" in k or k.endswith("/manifest.json")]


def test_a_failed_shard_upload_never_becomes_visible(s3_proxy) -> None:
    """A shard whose multipart upload fails for good is aborted; the store commits nothing of it."""
    s3_proxy.proxy.add(Fault("403", put_to("/c/"), nth=2, times=10**6))  # a part of a shard
    url = s3_proxy.url()
    big = np.random.default_rng(0).random((64, 40_000), dtype=np.float32)
    with (
        pytest.raises(StorageError, match=r"s3://"),
        predstore.StoreWriter(url, storage_options=FAST) as w,
    ):
        w.write({"big": big}, np.arange(64))
    assert not [k for k in s3_proxy.keys("") if "/c/" in k]  # no shard object
    assert s3_proxy.server.multipart_uploads(s3_proxy.bucket) == []
    with pytest.raises(predstore.StoreNotCommittedError):
        predstore.open(url)


def test_permanent_failures_are_one_error_naming_the_url_never_the_secret(s3_proxy) -> None:
    url = s3_proxy.url()
    with predstore.StoreWriter(url) as w:
        w.write({"x": np.arange(4)}, np.arange(4))
    s3_proxy.proxy.add(Fault("403", lambda *_: True, times=10**6))
    secret = "secret-that-must-not-leak"
    options = {**FAST, "aws_secret_access_key": secret}
    with pytest.raises(StorageError, match=r"s3://.*manifest\.json.*AccessDenied") as caught:
        predstore.open(url, storage_options=options)
    assert secret not in str(caught.value)
    with (
        pytest.raises(StorageError) as caught,
        predstore.StoreWriter(url, mode="append", storage_options=options) as w,
    ):
        w.write({"x": np.arange(4, 8)}, np.arange(4, 8))
    assert secret not in str(caught.value)
    s3_proxy.proxy.faults.clear()
    assert predstore.open(url).indices().tolist() == [0, 1, 2, 3]  # the last commit is intact


def test_wrong_credentials_are_one_error_naming_the_url_never_the_key(s3_proxy) -> None:
    url = s3_proxy.url()
    with predstore.StoreWriter(url) as w:
        w.write({"x": np.arange(4)}, np.arange(4))
    s3_proxy.proxy.add(Fault("bad_key", lambda *_: True, times=10**6))
    wrong = {
        **FAST,
        "aws_access_key_id": "AKIAWRONGKEY0000",
        "aws_secret_access_key": "wrong-s3cr3t",
    }
    started = time.monotonic()
    for attempt in (
        lambda: predstore.open(url, storage_options=wrong),
        lambda: predstore.StoreWriter(url, mode="append", storage_options=wrong),
    ):
        # A HEAD's answer has no body, so no code: the status, and what to check.
        pattern = r"s3://\S+ failed: .*(InvalidAccessKeyId|403 Forbidden).*credentials"
        with pytest.raises(StorageError, match=pattern) as caught:
            attempt()
        assert "wrong-s3cr3t" not in str(caught.value)
    assert time.monotonic() - started < 60  # a 403 is not retried
    s3_proxy.proxy.faults.clear()
    assert predstore.open(url).indices().tolist() == [0, 1, 2, 3]


def test_an_unreachable_endpoint_fails_within_bounded_time(tmp_path: Path) -> None:
    from s3_support import free_port

    options = {**FAST, "aws_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    options |= {"aws_access_key_id": "k", "aws_secret_access_key": "s", "aws_region": "us-east-1"}
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"s3://nowhere/x\.pstore"):
        predstore.open("s3://nowhere/x.pstore", storage_options=options)
    with pytest.raises(StorageError, match=r"s3://nowhere/x\.pstore"):
        predstore.StoreWriter("s3://nowhere/x.pstore", storage_options=options)
    assert time.monotonic() - started < 120  # bounded retries, not a hang


def test_a_missing_bucket_is_named(s3) -> None:
    url = f"s3://no-such-bucket-{os.getpid()}/x.pstore"
    with pytest.raises(StorageError, match="bucket does not exist"):
        predstore.open(url)
    with pytest.raises(StorageError, match="bucket does not exist"):
        predstore.StoreWriter(url)
