from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import predstore
from predstore.write.background import BackgroundWriter
from support import assert_rows, batch


def test_batches_are_written_in_order_off_the_caller(tmp_path: Path) -> None:
    writer = BackgroundWriter(predstore.StoreWriter(tmp_path / "s"))
    for start in range(0, 100, 10):
        writer.submit(batch(range(start, start + 10)), np.arange(start, start + 10), nbytes=10)
    manifest = writer.close()
    assert manifest is not None and manifest.rows == 100
    assert_rows(predstore.open(tmp_path / "s"), range(100))


def test_the_caller_blocks_when_too_much_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = predstore.StoreWriter(tmp_path / "s")
    gate = threading.Event()
    original = store.write

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        gate.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "write", slow)
    writer = BackgroundWriter(store, max_pending_bytes=100)
    writer.submit(batch([0]), [0], nbytes=60)
    writer.submit(batch([1]), [1], nbytes=40)
    blocked = threading.Thread(target=writer.submit, args=(batch([2]), [2]), kwargs={"nbytes": 60})
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive() and writer.pending_bytes == 100  # waiting: the budget is full
    gate.set()
    blocked.join(10)
    assert not blocked.is_alive()
    writer.close()
    assert_rows(predstore.open(tmp_path / "s"), [0, 1, 2])


def test_an_error_reaches_the_caller_once_with_its_traceback(tmp_path: Path) -> None:
    writer = BackgroundWriter(predstore.StoreWriter(tmp_path / "s"))
    writer.submit(batch([0, 1]), [0, 1])
    writer.submit({"other": np.zeros(1)}, [2])  # a different key set: refused on the thread
    writer.drain()
    with pytest.raises(predstore.SchemaError, match="keys differ") as raised:
        writer.submit(batch([3]), [3])
    assert any("store_writer.py" in str(entry.path) for entry in raised.traceback)
    with pytest.raises(predstore.PredstoreError, match="stopped after"):
        writer.check()
    writer.fail()
    predstore.finalize(tmp_path / "s")
    assert_rows(predstore.open(tmp_path / "s"), [0, 1])


def test_close_after_an_error_keeps_the_rows_and_raises(tmp_path: Path) -> None:
    writer = BackgroundWriter(predstore.StoreWriter(tmp_path / "s"))
    writer.submit(batch([5]), [5])
    writer.submit(batch([1]), [-1])
    with pytest.raises(predstore.InvalidBatchError, match="non-negative"):
        writer.close()
    predstore.finalize(tmp_path / "s")
    assert_rows(predstore.open(tmp_path / "s"), [5])
