"""sidecar.json: job fields rewritten, human fields and unknown fields kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predstore.errors import CorruptRunError
from predstore.registry.rundir.sidecar import HumanFields, SidecarFile, read_sidecar, upsert_store


def _job(**overrides: object) -> dict[str, object]:
    job: dict[str, object] = {
        "schema_version": 1,
        "run_id": "r1",
        "run_dir": "/runs/r1",
        "status": "running",
        "created_at": "2024-01-01T00:00:00.000+00:00",
        "updated_at": "2024-01-01T00:00:01.000+00:00",
        "ended_at": None,
        "attempt": 1,
        "hparams": {},
        "last_metrics": {},
        "best_checkpoint": None,
        "stores": [],
    }
    job.update(overrides)
    return job


def test_first_write_uses_the_jobs_human_fields(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    SidecarFile(path, HumanFields("baseline", "first try", ["a"])).write(_job())
    doc = read_sidecar(path)
    assert (doc["display_name"], doc["notes"], doc["tags"]) == ("baseline", "first try", ["a"])
    assert list(doc)[:6] == ["schema_version", "run_id", "display_name", "status", "tags", "notes"]


def test_human_edits_and_extra_fields_survive_job_writes(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    sidecar = SidecarFile(path, HumanFields(None, "", ["from-job"]))
    sidecar.write(_job())
    edited = json.loads(path.read_text())
    edited.update(notes="lr too high", tags=["keep", "look-at"], display_name="oops")
    edited["reviewer"] = "ana"  # a field the job does not know
    edited["status"] = "completed"  # a job field: the job's value wins
    path.write_text(json.dumps(edited))
    sidecar.write(_job(status="running", attempt=2))
    doc = read_sidecar(path)
    assert (doc["notes"], doc["tags"], doc["display_name"]) == (
        "lr too high",
        ["keep", "look-at"],
        "oops",
    )
    assert doc["reviewer"] == "ana"
    assert (doc["status"], doc["attempt"]) == ("running", 2)


def test_badly_typed_human_fields_keep_their_previous_value(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    sidecar = SidecarFile(path, HumanFields(None, "note", ["a"]))
    sidecar.write(_job())
    edited = json.loads(path.read_text())
    edited.update(tags="a,b", notes=["x"])
    path.write_text(json.dumps(edited))
    sidecar.write(_job())
    doc = read_sidecar(path)  # still schema-valid
    assert (doc["tags"], doc["notes"]) == (["a"], "note")


def test_an_unparseable_sidecar_is_moved_aside_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    sidecar = SidecarFile(path, HumanFields(None, "kept", ["t"]))
    sidecar.write(_job())
    path.write_text('{"notes": "half an edit')
    sidecar.write(_job(status="completed"))
    asides = [p for p in tmp_path.iterdir() if p.name.startswith("sidecar.json.corrupt-")]
    assert len(asides) == 1
    assert asides[0].read_text() == '{"notes": "half an edit'
    doc = read_sidecar(path)
    assert (doc["status"], doc["notes"], doc["tags"]) == ("completed", "kept", ["t"])


def test_load_returns_the_document_and_its_human_fields(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.json"
    SidecarFile(path, HumanFields("n", "notes", ["x"])).write(_job())
    fresh = SidecarFile(path, HumanFields(None, "", []))
    doc = fresh.load()
    assert doc is not None
    assert doc["run_id"] == "r1"
    assert fresh.human == HumanFields("n", "notes", ["x"])
    assert SidecarFile(tmp_path / "absent.json", HumanFields()).load() is None


def test_read_sidecar_rejects_bad_documents(tmp_path: Path, damaged_run_files: None) -> None:
    path = tmp_path / "sidecar.json"
    path.write_text("[1, 2]")
    with pytest.raises(CorruptRunError, match="must hold a JSON object"):
        read_sidecar(path)
    path.write_text(json.dumps(_job(status="exploded", tags=[], notes="")))
    with pytest.raises(CorruptRunError, match=r"\$\.status"):
        read_sidecar(path)


def test_upsert_store_replaces_by_path() -> None:
    stores: list[dict[str, object]] = []
    upsert_store(stores, {"path": "/a", "rows": 1, "committed_at": "t1", "write_id": "w1"})
    upsert_store(stores, {"path": "/b", "rows": 2, "committed_at": "t2", "write_id": "w2"})
    upsert_store(stores, {"path": "/a", "rows": 5, "committed_at": "t3", "write_id": "w3"})
    assert [(s["path"], s["rows"]) for s in stores] == [("/a", 5), ("/b", 2)]
