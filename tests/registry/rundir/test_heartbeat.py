"""The heartbeat file and its thread."""

from __future__ import annotations

import time
from pathlib import Path

from predstore.registry.rundir.heartbeat import Heartbeat, read_heartbeat, write_heartbeat


def test_the_thread_beats_at_its_interval_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    steps = iter(range(1000))
    beat = Heartbeat(path, interval=0.05, status=lambda: {"step": next(steps)})
    beat.start()
    first = read_heartbeat(path)
    assert first is not None
    time.sleep(0.5)
    later = read_heartbeat(path)
    assert later is not None
    assert later.time > first.time
    assert later.step is not None and later.step >= 4  # about ten beats in half a second
    beat.stop()
    assert not beat.running
    stopped = read_heartbeat(path)
    time.sleep(0.2)
    assert read_heartbeat(path) == stopped


def test_content_and_fallback_to_modification_time(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    assert read_heartbeat(path) is None
    write_heartbeat(path, {"step": 7, "last_log_at": "2024-01-01T00:00:00+00:00"})
    info = read_heartbeat(path)
    assert info is not None
    assert (info.step, info.last_log_at) == (7, 1_704_067_200.0)
    assert info.pid is not None and info.host
    assert abs(info.time - time.time()) < 5
    path.write_text("garbage")
    fallback = read_heartbeat(path)
    assert fallback is not None
    assert fallback.time == path.stat().st_mtime
    assert fallback.step is None


def test_write_errors_do_not_kill_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.json"
    path.mkdir()  # cannot be replaced by a file
    beat = Heartbeat(path, interval=0.05)
    beat.start()
    time.sleep(0.15)
    assert beat.running
    path.rmdir()
    time.sleep(0.3)
    assert read_heartbeat(path) is not None
    beat.stop()
