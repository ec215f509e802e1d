"""Timestamps of the run registry: ISO 8601 in UTC with milliseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_iso() -> str:
    """The current time, e.g. ``2025-01-31T12:00:00.123+00:00``."""
    return iso_from_unix(time.time())


def iso_from_unix(seconds: float) -> str:
    """Format seconds since the epoch as an ISO 8601 UTC timestamp."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")


def parse_iso(text: object) -> datetime | None:
    """Parse an ISO 8601 timestamp into an aware UTC datetime; None if it is not one.

    A timestamp without a zone is taken as UTC, which is what the registry writes.
    """
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def unix_from_iso(text: object) -> float | None:
    """Parse an ISO 8601 timestamp into seconds since the epoch; None if it is not one."""
    parsed = parse_iso(text)
    return None if parsed is None else parsed.timestamp()


def datetime_from_unix(seconds: object) -> datetime | None:
    """Seconds since the epoch as an aware UTC datetime; None for anything but a number."""
    if not isinstance(seconds, (int, float)):
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)
