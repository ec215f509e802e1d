"""The JSON Schemas of ``sidecar.json`` and ``summary.json``, and validation against them."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Literal

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from predstore.errors import CorruptRunError

SchemaName = Literal["sidecar", "summary"]


@functools.cache
def load_schema(name: SchemaName) -> dict[str, Any]:
    """The schema document shipped in ``predstore/registry/rundir/schemas/<name>.schema.json``."""
    text = (
        resources.files("predstore")
        .joinpath("registry", "rundir", "schemas", f"{name}.schema.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(name: SchemaName) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def schema_errors(document: object, name: SchemaName) -> list[str]:
    """Every violation of the schema, as ``"<json path>: <message>"``; empty when valid."""
    errors = sorted(_validator(name).iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{e.json_path}: {e.message}" for e in errors]


def check(document: object, name: SchemaName, source: str) -> None:
    """Raise :class:`CorruptRunError` naming ``source`` if ``document`` violates the schema."""
    errors = schema_errors(document, name)
    if errors:
        shown = "; ".join(errors[:3]) + (
            f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        )
        raise CorruptRunError(f"{source} does not follow the {name} schema: {shown}")
