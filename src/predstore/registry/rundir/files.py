"""The files of a run directory, their format versions and the run statuses."""

from __future__ import annotations

from typing import Final, Literal

SIDECAR: Final = "sidecar.json"
SUMMARY: Final = "summary.json"
METRICS: Final = "metrics.csv"
HEARTBEAT: Final = "heartbeat.json"
MEDIA_DIR: Final = "media"
MEDIA_INDEX: Final = "media.jsonl"
HPARAMS_YAML: Final = "hparams.yaml"

#: The files that mark a directory as a registry run directory.
MARKERS: Final = (SIDECAR, SUMMARY, HEARTBEAT)

SIDECAR_VERSION: Final = 1
SUMMARY_VERSION: Final = 1

Status = Literal["running", "completed", "failed", "interrupted"]
STATUSES: Final[tuple[Status, ...]] = ("running", "completed", "failed", "interrupted")
TERMINAL: Final = frozenset({"completed", "failed", "interrupted"})
#: The status a query reports for a running run whose heartbeat is too old.
STALE: Final = "stale"
