"""Exporting the wide table to CSV and Parquet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from predstore.errors import QueryError
from predstore.registry import Registry, scan
from registry_support import GeneratedRegistry


@pytest.fixture(scope="module")
def registry(generated: GeneratedRegistry) -> Iterator[Registry]:
    scan(generated.root)
    with Registry.open(generated.root) as opened:
        yield opened


def test_parquet_round_trips_every_type(registry: Registry, tmp_path: Path) -> None:
    out = registry.export(tmp_path / "runs.parquet")
    back = pl.read_parquet(out)
    assert back.equals(registry.table())
    assert back.schema["tags"] == pl.List(pl.String)
    assert [p.name for p in tmp_path.iterdir()] == ["runs.parquet"]


def test_csv_holds_the_same_rows(
    registry: Registry, generated: GeneratedRegistry, tmp_path: Path
) -> None:
    out = registry.export(tmp_path / "runs.csv", tags="sweep:7")
    back = pl.read_csv(out)
    table = registry.table(tags="sweep:7")
    assert back.columns == table.columns
    assert back["run_id"].to_list() == table["run_id"].to_list()
    assert [json.loads(t) for t in back["tags"]] == table["tags"].to_list()
    assert back["summary.val_loss:min"].to_list() == table["summary.val_loss:min"].to_list()
    assert back.height == len([s for s in generated.specs if "sweep:7" in s.tags])


def test_unknown_formats_are_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match=r"ending in \.csv or \.parquet"):
        registry.export(tmp_path / "runs.xlsx")
    assert not (tmp_path / "runs.xlsx").exists()
