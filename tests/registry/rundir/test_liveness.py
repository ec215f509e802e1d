"""The stale rule, in Python and in SQL."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from predstore.registry.rundir.liveness import DEFAULT_STALE_AFTER, effective_status, status_sql


@pytest.mark.parametrize(
    ("status", "age", "interval", "expected"),
    [
        ("running", 10.0, 30.0, "running"),
        ("running", DEFAULT_STALE_AFTER + 1, 30.0, "stale"),
        ("running", 500.0, 200.0, "running"),  # 3 x its own interval (600 s) not yet passed
        ("running", 700.0, 200.0, "stale"),
        ("running", None, 30.0, "stale"),  # never seen
        ("completed", 10_000.0, 30.0, "completed"),
        ("failed", None, None, "failed"),
    ],
)
def test_effective_status(
    status: str, age: float | None, interval: float | None, expected: str
) -> None:
    scanned_at = 1_000_000.0
    last_seen = None if age is None else scanned_at - age
    assert effective_status(status, last_seen, scanned_at, interval) == expected


def test_sql_and_python_agree() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE runs (status TEXT, last_seen REAL, heartbeat_interval REAL)")
    cases = list(
        itertools.product(
            ["running", "completed", "interrupted"],
            [None, 0.0, 250.0, 299.0, 301.0, 599.0, 601.0, 5000.0],
            [None, 1.0, 100.0, 200.0],
        )
    )
    scanned_at, stale_after = 10_000.0, 300.0
    conn.executemany(
        "INSERT INTO runs VALUES (?, ?, ?)",
        [(s, None if a is None else scanned_at - a, i) for s, a, i in cases],
    )
    got = conn.execute(
        f"SELECT {status_sql()} FROM runs", {"scanned_at": scanned_at, "stale_after": stale_after}
    ).fetchall()
    want = [
        effective_status(s, None if a is None else scanned_at - a, scanned_at, i, stale_after)
        for s, a, i in cases
    ]
    assert [g[0] for g in got] == want
    assert "stale" in want
