"""``sidecar.json``: who a run is, what it is doing, and what it produced.

The job owns most fields and rewrites the file atomically at every save.
People own three fields, ``display_name``, ``notes`` and ``tags``: the job
re-reads them from disk right before each write and carries them over, and
it keeps any top-level field it does not know, so people may add their own.
The job writes its own values of the human fields only when it creates the
file. To narrow the window between that read and the rename, the job checks
that the file did not change while it prepared the new one, and starts over
if it did.

A sidecar that the job cannot parse (a half-saved edit) is never silently
overwritten: the job moves it aside as ``sidecar.json.corrupt-<unix time>``,
logs a warning, and writes a fresh file with the human fields it last read.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, MutableSequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predstore.errors import CorruptRunError
from predstore.registry._atomic import commit_temp, discard, write_temp
from predstore.registry.rundir import json_schemas
from predstore.registry.rundir._read import parse_json, read_regular

log = logging.getLogger(__name__)

#: Fields that the running job writes.
JOB_FIELDS = (
    "schema_version",
    "run_id",
    "run_dir",
    "status",
    "created_at",
    "started_at",
    "updated_at",
    "ended_at",
    "attempt",
    "host",
    "pid",
    "slurm",
    "heartbeat_interval",
    "error",
    "best_checkpoint",
    "last_metrics",
    "hparams",
    "stores",
)
#: Fields that people edit; the job never overwrites them.
HUMAN_FIELDS = ("display_name", "notes", "tags")

_ORDER = ("schema_version", "run_id", "display_name", "status", "tags", "notes")
_MERGE_ATTEMPTS = 3


@dataclass
class HumanFields:
    """The human-edited fields of a sidecar."""

    display_name: str | None = None
    notes: str = ""
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"display_name": self.display_name, "notes": self.notes, "tags": list(self.tags)}


def human_fields_from(doc: Mapping[str, Any], fallback: HumanFields) -> HumanFields:
    """The human fields of ``doc``; any field of the wrong type keeps its ``fallback`` value."""
    name = doc.get("display_name", fallback.display_name)
    notes = doc.get("notes", fallback.notes)
    tags = doc.get("tags", fallback.tags)
    if name is not None and not isinstance(name, str):
        log.warning("sidecar display_name must be a string or null, got %r; keeping it", name)
        name = fallback.display_name
    if not isinstance(notes, str):
        log.warning("sidecar notes must be a string, got %r; keeping the previous notes", notes)
        notes = fallback.notes
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        log.warning("sidecar tags must be a list of non-empty strings, got %r", tags)
        tags = fallback.tags
    return HumanFields(display_name=name, notes=notes, tags=list(dict.fromkeys(tags)))


def upsert_store(stores: MutableSequence[dict[str, Any]], entry: dict[str, Any]) -> None:
    """Record a committed store, replacing an earlier entry with the same path."""
    for i, existing in enumerate(stores):
        if existing.get("path") == entry["path"]:
            stores[i] = entry
            return
    stores.append(entry)


def encode_sidecar(doc: Mapping[str, Any]) -> bytes:
    """The bytes of ``sidecar.json``, human fields first."""
    ordered = {k: doc[k] for k in _ORDER if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    return (json.dumps(ordered, indent=1, allow_nan=False) + "\n").encode()


def read_sidecar(path: Path) -> dict[str, Any]:
    """Read and validate ``sidecar.json``.

    Raises:
        FileNotFoundError: if the file does not exist.
        CorruptRunError: if it is not a JSON object following the sidecar schema.
    """
    doc = _parse(read_regular(path), path)
    json_schemas.check(doc, "sidecar", str(path))
    return doc


def _parse(data: bytes, path: Path) -> dict[str, Any]:
    doc = parse_json(data, path)
    if not isinstance(doc, dict):
        raise CorruptRunError(f"{path} must hold a JSON object, found {type(doc).__name__}")
    return doc


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class SidecarFile:
    """Reads and writes one run's ``sidecar.json`` for the job that owns it."""

    def __init__(self, path: Path, human: HumanFields) -> None:
        self.path = path
        #: The human fields as last read from disk (or as given, before the file exists).
        self.human = human

    def load(self) -> dict[str, Any] | None:
        """The sidecar on disk, for a resumed job; None if absent or moved aside as corrupt."""
        doc = self._read_or_move_aside()
        if doc is not None:
            self.human = human_fields_from(doc, self.human)
        return doc

    def write(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Write the job's fields, keeping the human-edited and unknown fields on disk.

        Returns the document written.

        Raises:
            OSError: if the file cannot be written, or kept changing under the job.
        """
        for _ in range(_MERGE_ATTEMPTS):
            before = _signature(self.path)
            disk = self._read_or_move_aside()
            if disk is not None and _signature(self.path) != before:
                continue
            doc = self._merge(job, disk)
            tmp = write_temp(self.path, encode_sidecar(doc))
            if _signature(self.path) == before:
                commit_temp(tmp, self.path)
                return doc
            discard(tmp)  # someone saved meanwhile: merge their version instead
        raise BlockingIOError(f"{self.path} kept changing while the job tried to update it")

    def _merge(self, job: Mapping[str, Any], disk: Mapping[str, Any] | None) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if disk is not None:
            self.human = human_fields_from(disk, self.human)
            doc.update({k: v for k, v in disk.items() if k not in JOB_FIELDS})
        doc.update(self.human.to_json())
        doc.update({k: job[k] for k in JOB_FIELDS if k in job})
        return doc

    def _read_or_move_aside(self) -> dict[str, Any] | None:
        try:
            data = read_regular(self.path)
        except FileNotFoundError:
            return None
        try:
            return _parse(data, self.path)
        except CorruptRunError:
            time.sleep(0.05)  # an editor may be half-way through a non-atomic save
            try:
                return _parse(read_regular(self.path), self.path)
            except FileNotFoundError:
                return None
            except CorruptRunError as exc:
                self._move_aside(exc)
                return None

    def _move_aside(self, reason: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        os.replace(self.path, aside)
        log.warning("%s; moved it to %s and writing a fresh one", reason, aside.name)
