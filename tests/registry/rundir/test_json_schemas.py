"""The JSON Schemas of sidecar.json and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from predstore.errors import CorruptRunError
from predstore.registry.rundir.json_schemas import check, load_schema, schema_errors

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@pytest.mark.parametrize("name", ["sidecar", "summary"])
def test_shipped_schemas_are_valid_draft_2020_12_and_match_schemas_dir(name: str) -> None:
    shipped = load_schema(name)  # type: ignore[arg-type]
    jsonschema.Draft202012Validator.check_schema(shipped)
    assert shipped["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert shipped == json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def test_violations_are_listed_with_their_path() -> None:
    errors = schema_errors({"schema_version": 1, "run_id": "", "status": "exploded"}, "sidecar")
    assert any(e.startswith("$.run_id:") for e in errors)
    assert any(e.startswith("$.status:") for e in errors)
    assert any("'created_at' is a required property" in e for e in errors)


def test_check_names_the_file() -> None:
    with pytest.raises(CorruptRunError, match=r"runs/a/summary.json does not follow the summary"):
        check({"schema_version": 2}, "summary", "runs/a/summary.json")


def test_non_finite_metric_values_are_strings() -> None:
    doc = {
        "schema_version": 1,
        "run_id": "r",
        "updated_at": "2024-01-01T00:00:00.000+00:00",
        "csv_rows": 1,
        "metrics": {
            "loss": {
                "last": "nan",
                "min": None,
                "max": None,
                "count": 1,
                "nan_count": 1,
                "step": 0,
                "epoch": None,
                "min_step": None,
                "max_step": None,
            }
        },
    }
    assert schema_errors(doc, "summary") == []
    doc["metrics"]["loss"]["last"] = "NaN"
    assert schema_errors(doc, "summary")
