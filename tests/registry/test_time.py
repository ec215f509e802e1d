"""Timestamps of the registry."""

from __future__ import annotations

import time

import pytest

from predstore.registry._time import iso_from_unix, now_iso, unix_from_iso


def test_round_trip_to_the_millisecond() -> None:
    seconds = 1_700_000_123.456
    text = iso_from_unix(seconds)
    assert text == "2023-11-14T22:15:23.456+00:00"
    assert unix_from_iso(text) == pytest.approx(seconds, abs=1e-3)


def test_now_is_now() -> None:
    parsed = unix_from_iso(now_iso())
    assert parsed is not None
    assert abs(parsed - time.time()) < 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00Z", 1_704_067_200.0),
        ("2024-01-01T01:00:00+01:00", 1_704_067_200.0),
        ("2024-01-01T00:00:00", 1_704_067_200.0),  # no zone: UTC
        ("yesterday", None),
        (17, None),
        (None, None),
    ],
)
def test_parsing(text: object, expected: float | None) -> None:
    assert unix_from_iso(text) == expected
