"""ls, best, show and the wide table over the generated registry."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from predstore.errors import QueryError, UnknownRunError
from predstore.registry import Registry, scan
from registry_support import GeneratedRegistry, RunSpec


@pytest.fixture(scope="module")
def registry(generated: GeneratedRegistry) -> Iterator[Registry]:
    scan(generated.root)
    with Registry.open(generated.root) as opened:
        yield opened


def _effective(spec: RunSpec) -> str:
    if spec.status == "running" and (spec.heartbeat_age or 0) > 300:
        return "stale"
    return spec.status


def _best(values: list[float], mode: str) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return None
    return min(finite) if mode == "min" else max(finite)


def test_ls_lists_every_indexed_run_newest_first(
    registry: Registry, generated: GeneratedRegistry
) -> None:
    frame = registry.ls()
    assert frame.height == len(generated.specs)
    by_created = sorted(generated.specs, key=lambda s: s.created_at, reverse=True)
    assert frame["run_id"].to_list() == [s.run_id for s in by_created]
    assert frame.schema["created_at"] == pl.Datetime("ms", "UTC")
    assert frame.schema["tags"] == pl.List(pl.String)
    assert frame.columns[:4] == ["run_id", "display_name", "status", "alive"]


def test_status_alive_and_limit(registry: Registry, generated: GeneratedRegistry) -> None:
    for status in ("running", "stale", "completed", "failed", "interrupted"):
        frame = registry.ls(status=status)
        want = sorted(s.run_id for s in generated.specs if _effective(s) == status)
        assert sorted(frame["run_id"]) == want
        assert want, f"the generated registry should hold {status} runs"
    alive = registry.ls(alive=True)
    assert alive["alive"].all()
    assert sorted(alive["run_id"]) == sorted(registry.ls(status="running")["run_id"])
    either = registry.ls(status=["failed", "stale"])
    assert either.height == registry.ls(status="failed").height + registry.ls(status="stale").height
    assert registry.ls(limit=7).height == 7
    assert registry.ls(limit=0).height == 0


def test_tags_match_whole_tags_only(registry: Registry, generated: GeneratedRegistry) -> None:
    def with_tags(*tags: str) -> list[str]:
        return sorted(s.run_id for s in generated.specs if all(t in s.tags for t in tags))

    assert sorted(registry.ls(tags="sweep:7")["run_id"]) == with_tags("sweep:7")
    assert sorted(registry.ls(tags=["sweep:7", "group:a"])["run_id"]) == with_tags(
        "sweep:7", "group:a"
    )
    assert registry.ls(tags="a").height == 0  # "ab" and "group:a" do not contain the tag "a"
    assert sorted(registry.ls(tags="ab")["run_id"]) == with_tags("ab")
    assert sorted(registry.ls(tags="x%_y")["run_id"]) == with_tags("x%_y")
    assert registry.ls(tags="x%").height == 0
    assert registry.ls(tags="sweep:%").height == 0


def test_sort_by_summary_keeps_runs_without_the_metric_last(
    registry: Registry, generated: GeneratedRegistry
) -> None:
    for descending in (False, True):
        frame = registry.ls(sort="summary.val_loss:min", descending=descending)
        values = frame["summary.val_loss:min"].to_list()
        known = [v for v in values if v is not None]
        assert values[: len(known)] == known  # every missing value after every known one
        assert known == sorted(known, reverse=descending)
        expected = sum(
            1 for s in generated.specs if _best(generated.metrics_of(s).get("val_loss", []), "min")
        )
        assert len(known) == expected


def test_sort_and_filter_by_hyperparameters(
    registry: Registry, generated: GeneratedRegistry
) -> None:
    frame = registry.ls(sort="hparams.lr", columns=["hparams.optimizer", "hparams.model.depth"])
    assert frame.schema["hparams.lr"] == pl.Float64
    assert frame.schema["hparams.model.depth"] == pl.Int64
    assert frame["hparams.lr"].to_list() == sorted(s.hparams["lr"] for s in generated.specs)
    small = registry.ls(where=["hparams.lr<=0.01", "hparams.optimizer=adam"])
    want = sorted(
        s.run_id
        for s in generated.specs
        if s.hparams["lr"] <= 0.01 and s.hparams["optimizer"] == "adam"
    )
    assert sorted(small["run_id"]) == want
    ema = registry.ls(where=("hparams.use_ema", "=", True), columns="hparams.use_ema")
    assert ema.schema["hparams.use_ema"] == pl.Boolean
    assert sorted(ema["run_id"]) == sorted(
        s.run_id for s in generated.specs if s.hparams["use_ema"]
    )


def test_where_on_summary_and_columns(registry: Registry, generated: GeneratedRegistry) -> None:
    frame = registry.ls(where="summary.train_loss:count>=6", columns="summary.train_loss:count")
    assert frame.height == len([s for s in generated.specs if generated.metrics_of(s)])
    assert set(frame["summary.train_loss:count"]) == {6}
    named = registry.ls(where="display_name=run number 5")
    assert named["run_id"].to_list() == ["run-005"]


def test_best_ranks_only_runs_with_the_metric(
    registry: Registry, generated: GeneratedRegistry
) -> None:
    for mode in ("min", "max"):
        frame = registry.best("val_loss", mode=mode, limit=5)  # type: ignore[arg-type]
        candidates = []
        for s in generated.specs:
            value = _best(generated.metrics_of(s).get("val_loss", []), mode)
            if value is not None:
                candidates.append((value, generated.run_dir(s), s.run_id))
        # Ties are broken by run directory.
        candidates.sort(key=lambda c: (-c[0] if mode == "max" else c[0], c[1]))
        assert frame["run_id"].to_list() == [c[2] for c in candidates[:5]]
        assert frame[f"summary.val_loss:{mode}"].to_list() == [c[0] for c in candidates[:5]]
    everything = registry.best("val_loss")
    assert everything.height == len(candidates)  # no run without val_loss, however many asked
    assert everything.height < len(generated.specs)


def test_best_with_filters_and_step(registry: Registry, generated: GeneratedRegistry) -> None:
    frame = registry.best("summary.val_acc", mode="max", tags="sweep:7", status="completed")
    assert set(frame["status"]) == {"completed"}
    assert all("sweep:7" in tags for tags in frame["tags"])
    first = generated.spec(frame["run_id"][0])
    values = first.metrics["val_acc"]
    assert frame["summary.val_acc:max_step"][0] == values.index(max(values))
    assert frame["summary.val_acc"][0] == values[-1]


def test_show_by_id_prefix_and_directory(registry: Registry, generated: GeneratedRegistry) -> None:
    spec = generated.spec("run-005")
    detail = registry.show("run-005")
    assert detail.info["display_name"] == "run number 5"
    assert detail.info["tags"] == spec.tags
    assert detail.sidecar["run_id"] == "run-005"
    summary = {row["metric"]: row for row in detail.summary.iter_rows(named=True)}
    assert summary["val_loss"]["count"] == len(spec.metrics["val_loss"])
    assert summary["val_loss"]["min"] == min(spec.metrics["val_loss"])
    assert dict(detail.hparams.iter_rows()) == {
        "lr": "0.1" if spec.hparams["lr"] == 0.1 else str(spec.hparams["lr"]),
        "optimizer": spec.hparams["optimizer"],
        "model.depth": str(spec.hparams["model"]["depth"]),
        "model.act": "relu",
        "use_ema": "false",
    }
    assert registry.show(str(generated.root / spec.rel)).info["run_id"] == "run-005"
    ambiguous = len([s for s in generated.specs if s.run_id.startswith("run-01")])
    with pytest.raises(UnknownRunError, match=f"matches {ambiguous} runs"):
        registry.show("run-01")
    with pytest.raises(UnknownRunError, match="no run 'nope'"):
        registry.show("nope")


def test_the_wide_table(registry: Registry, generated: GeneratedRegistry) -> None:
    table = registry.table(status="completed")
    assert table.height == len([s for s in generated.specs if s.status == "completed"])
    for column in (
        "hparams.lr",
        "hparams.model.depth",
        "summary.val_loss",
        "summary.val_loss:min",
        "summary.val_loss:max",
        "summary.val_loss:count",
        "summary.train_loss",
    ):
        assert column in table.columns
    row = table.filter(pl.col("run_id") == "run-001").row(0, named=True)
    spec = generated.spec("run-001")
    assert row["summary.val_loss:max"] == max(spec.metrics["val_loss"])
    assert row["hparams.optimizer"] == spec.hparams["optimizer"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sort": "val_loss"}, "unknown field 'val_loss'"),
        ({"sort": "created_at DESC; DROP TABLE runs"}, "unknown field"),
        ({"status": "zombie"}, "unknown status"),
        ({"tags": [""]}, "non-empty strings"),
        ({"where": "summary.val_loss<low"}, "numeric"),
        ({"limit": -1}, "non-negative integer"),
    ],
)
def test_bad_queries_are_clear_errors(registry: Registry, kwargs: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        registry.ls(**kwargs)
    assert registry.ls().height > 0  # nothing was dropped


def test_best_rejects_bad_modes(registry: Registry) -> None:
    with pytest.raises(QueryError, match="'min' or 'max'"):
        registry.best("val_loss", mode="lowest")  # type: ignore[arg-type]


def test_open_needs_a_root_or_cache(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="root directory or a cache"):
        Registry.open()
