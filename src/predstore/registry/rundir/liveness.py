"""Liveness: when is a run reported as ``stale``.

A run whose sidecar says ``running`` is *stale* when its last sign of life
(the newer of the heartbeat time and the sidecar's ``updated_at``) is older
than the threshold at the time of the scan that indexed it::

    stale  <=>  status == "running"
                and scanned_at - last_seen > max(stale_after, 3 * heartbeat_interval)

``stale_after`` defaults to 300 seconds and is chosen by the reader. The
``3 * heartbeat_interval`` floor keeps runs that were configured with a long
interval from being called stale between two heartbeats. Terminal runs
(completed, failed, interrupted) are never stale. Liveness is judged against
the scan time, not the query time, so a query tells the state as of the last
scan consistently; re-scan to refresh it.

The same rule exists twice, in Python (:func:`effective_status`) and in SQL
(:func:`status_sql`), because queries filter and sort by it; the tests check
that both agree.
"""

from __future__ import annotations

from predstore.registry.rundir.files import STALE

#: Default seconds without a sign of life after which a running run is stale.
DEFAULT_STALE_AFTER = 300.0
#: A run's own heartbeat interval times this is the smallest threshold applied to it.
INTERVAL_FACTOR = 3.0


def threshold(stale_after: float, heartbeat_interval: float | None) -> float:
    """Seconds without a sign of life after which this run is stale."""
    return max(stale_after, INTERVAL_FACTOR * (heartbeat_interval or 0.0))


def effective_status(
    status: str,
    last_seen: float | None,
    scanned_at: float,
    heartbeat_interval: float | None,
    stale_after: float = DEFAULT_STALE_AFTER,
) -> str:
    """The status a query reports: the sidecar's, or ``stale``."""
    if status != "running":
        return status
    if last_seen is None or scanned_at - last_seen > threshold(stale_after, heartbeat_interval):
        return STALE
    return status


def status_sql(table: str = "runs") -> str:
    """An SQL expression equal to :func:`effective_status` for a row of the runs table.

    It reads the named parameters ``:scanned_at`` and ``:stale_after``.
    """
    return (
        f"CASE WHEN {table}.status = 'running' AND ({table}.last_seen IS NULL OR "
        f":scanned_at - {table}.last_seen > "
        f"MAX(:stale_after, {INTERVAL_FACTOR} * COALESCE({table}.heartbeat_interval, 0))) "
        f"THEN '{STALE}' ELSE {table}.status END"
    )
