"""Querying a scanned registry: ``ls``, ``best``, ``show`` and the wide table, as polars DataFrames.

Every query reads the SQLite cache read-only. Filters and sort keys are
fields (see :mod:`predstore.registry.query.field_sql`) bound as SQL parameters.
Statuses are reported as of the last scan (see :mod:`predstore.registry.rundir.liveness`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import polars as pl

from predstore.errors import QueryError, UnknownRunError
from predstore.registry._time import iso_from_unix
from predstore.registry.index import sqlite_cache
from predstore.registry.query.dataframes import (
    BASE_COLUMNS,
    PROBLEMS_SCHEMA,
    STORES_SCHEMA,
    SUMMARY_SCHEMA,
    runs_frame,
    wide_frame,
)
from predstore.registry.query.field_sql import (
    COLUMNS,
    OPERATORS,
    Field,
    SqlBuilder,
    parse_condition,
    parse_field,
)
from predstore.registry.query.table_export import write_table
from predstore.registry.rundir.files import STALE, STATUSES
from predstore.registry.rundir.liveness import DEFAULT_STALE_AFTER

#: Statuses a query reports and accepts as a filter.
QUERY_STATUSES = (*STATUSES, STALE)

Where = str | tuple[str, str, Any]


@dataclass(frozen=True)
class Filters:
    """Which runs a query looks at. Conditions and tags must all hold."""

    status: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    alive: bool | None = None
    where: tuple[Where, ...] = ()


@dataclass(frozen=True)
class RunDetail:
    """Everything the registry holds about one run."""

    info: dict[str, Any]  # the run's row as ``ls`` reports it
    sidecar: dict[str, Any]  # sidecar.json as last scanned
    summary: pl.DataFrame  # one row per metric: metric, last, min, max, count, ...
    hparams: pl.DataFrame  # key, value (text as in the sidecar, JSON for non-strings)
    stores: pl.DataFrame  # path, rows, committed_at, write_id
    problems: pl.DataFrame  # file, message, fatal


def _as_tuple(value: str | Iterable[Any] | None) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _is_single_condition(where: object) -> bool:
    if isinstance(where, str):
        return True
    return (
        isinstance(where, tuple)
        and len(where) == 3
        and isinstance(where[0], str)
        and where[1] in OPERATORS
    )


class Registry:
    """A read-only view of a scanned registry.

    Example:
        >>> import predstore.registry as reg
        >>> report = reg.scan("runs")  # doctest: +SKIP
        >>> with reg.Registry.open("runs") as registry:  # doctest: +SKIP
        ...     registry.ls(tags=["baseline"], sort="summary.val_loss", limit=5)
        ...     registry.best("val_loss", mode="min")
    """

    def __init__(self, cache: Path, *, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.cache = Path(cache)
        self.stale_after = float(stale_after)
        self._conn = sqlite_cache.open_for_reading(self.cache)
        meta = sqlite_cache.read_meta(self._conn)
        self.root = Path(meta["root"]) if "root" in meta else None
        self.scanned_at = float(meta["scanned_at"]) if "scanned_at" in meta else 0.0

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str] | None = None,
        *,
        cache: str | os.PathLike[str] | None = None,
        stale_after: float = DEFAULT_STALE_AFTER,
    ) -> Registry:
        """Open the cache of ``root`` (``ROOT/.predstore-registry.sqlite``) or ``cache``."""
        if cache is None:
            if root is None:
                raise QueryError("Registry.open needs a root directory or a cache path")
            cache = sqlite_cache.default_cache_path(root)
        return cls(Path(cache), stale_after=stale_after)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------

    def ls(
        self,
        *,
        status: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        alive: bool | None = None,
        where: Where | Iterable[Where] | None = None,
        sort: str | None = None,
        descending: bool = False,
        limit: int | None = None,
        columns: str | Iterable[str] | None = None,
    ) -> pl.DataFrame:
        """List runs.

        Args:
            status: keep runs with any of these statuses (``running``, ``stale``,
                ``completed``, ``failed``, ``interrupted``).
            tags: keep runs that carry every one of these tags (whole tags).
            alive: True keeps running runs with a fresh heartbeat; False the others.
            where: conditions ``FIELD OP VALUE`` that must all hold.
            sort: a field; default newest ``created_at`` first. Missing values
                sort last in either direction.
            descending: sort in descending order.
            limit: at most this many runs.
            columns: extra fields to add as columns (``summary.X``, ``hparams.X``).
        """
        filters = self._filters(status, tags, alive, where)
        extra = [parse_field(c) for c in _as_tuple(columns)]
        if sort is None:
            order_field, descending = parse_field("created_at"), True
        else:
            order_field = parse_field(sort)
            if order_field.kind != "column" and order_field not in extra:
                extra.insert(0, order_field)
        return self._query(filters, extra, order_field, descending, limit)

    def best(
        self,
        metric: str,
        *,
        mode: Literal["min", "max"] = "min",
        limit: int | None = None,
        status: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        alive: bool | None = None,
        where: Where | Iterable[Where] | None = None,
    ) -> pl.DataFrame:
        """Runs ranked by the best value they reached of ``metric`` (its min or max).

        Runs that never logged the metric (or logged only NaN) are left out, so
        they never crowd out runs that have it. Adds the columns
        ``summary.<metric>:<mode>``, ``summary.<metric>:<mode>_step`` and
        ``summary.<metric>`` (the last value).
        """
        if mode not in ("min", "max"):
            raise QueryError(f"best mode must be 'min' or 'max'; got {mode!r}")
        if not isinstance(metric, str) or not metric:
            raise QueryError(f"best needs a metric name; got {metric!r}")
        metric = metric.removeprefix("summary.")
        best = Field("summary", metric, mode)
        extra = [best, Field("summary", metric, f"{mode}_step"), Field("summary", metric)]
        filters = self._filters(status, tags, alive, where)
        return self._query(filters, extra, best, mode == "max", limit, require=best)

    def table(
        self,
        *,
        status: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        alive: bool | None = None,
        where: Where | Iterable[Where] | None = None,
    ) -> pl.DataFrame:
        """One wide row per run: the ``ls`` columns, every ``hparams.<key>`` and, per
        metric, ``summary.<metric>`` (last) and ``summary.<metric>:min|max|count``."""
        runs = self.ls(status=status, tags=tags, alive=alive, where=where)
        selected = set(runs["run_dir"].to_list())
        hparams = self._wide_hparams(selected)
        summary = self._wide_summary(selected)
        for part in (hparams, summary):
            if part.width > 1:
                runs = runs.join(part, on="run_dir", how="left", maintain_order="left")
        return runs

    def export(
        self,
        path: str | os.PathLike[str],
        *,
        status: str | Iterable[str] | None = None,
        tags: str | Iterable[str] | None = None,
        alive: bool | None = None,
        where: Where | Iterable[Where] | None = None,
    ) -> Path:
        """Write :meth:`table` to ``path`` (``.csv`` or ``.parquet``); return the path."""
        frame = self.table(status=status, tags=tags, alive=alive, where=where)
        return write_table(frame, path)

    def show(self, run: str) -> RunDetail:
        """Everything about one run, by run id, unique run id prefix, or run directory."""
        run_dir = self._resolve(run)
        info = self._query(
            Filters(where=(("run_dir", "=", run_dir),)), [], parse_field("run_dir"), False, None
        ).row(0, named=True)
        (sidecar_text,) = self._conn.execute(
            "SELECT sidecar FROM runs WHERE run_dir = ?", (run_dir,)
        ).fetchone()
        return RunDetail(
            info=info,
            sidecar=json.loads(sidecar_text),
            summary=self._frame("summary", SUMMARY_SCHEMA, run_dir, "metric"),
            hparams=self._frame("hparams", {"key": pl.String, "value": pl.String}, run_dir, "key"),
            stores=self._frame("stores", STORES_SCHEMA, run_dir, "committed_at"),
            problems=self._frame("problems", PROBLEMS_SCHEMA, run_dir, "file"),
        )

    def problems(self) -> pl.DataFrame:
        """Every known problem of the scanned run directories."""
        rows = sqlite_cache.known_problems(self._conn)
        return pl.DataFrame(
            {
                "run_dir": [p.run_dir for p in rows],
                "file": [p.file for p in rows],
                "message": [p.message for p in rows],
                "fatal": [p.fatal for p in rows],
            },
            schema={
                "run_dir": pl.String,
                "file": pl.String,
                "message": pl.String,
                "fatal": pl.Boolean,
            },
        )

    # -- building blocks ----------------------------------------------------------------

    def _filters(
        self,
        status: str | Iterable[str] | None,
        tags: str | Iterable[str] | None,
        alive: bool | None,
        where: Where | Iterable[Where] | None,
    ) -> Filters:
        statuses = _as_tuple(status)
        unknown = [s for s in statuses if s not in QUERY_STATUSES]
        if unknown:
            raise QueryError(
                f"unknown status {unknown!r}; expected any of {', '.join(QUERY_STATUSES)}"
            )
        tag_list = _as_tuple(tags)
        if not all(isinstance(t, str) and t for t in tag_list):
            raise QueryError(f"tags must be non-empty strings; got {list(tag_list)!r}")
        conditions = (where,) if _is_single_condition(where) else _as_tuple(where)
        return Filters(statuses, tag_list, alive, conditions)

    def _builder(self) -> SqlBuilder:
        return SqlBuilder({"scanned_at": self.scanned_at, "stale_after": self.stale_after})

    def _query(
        self,
        filters: Filters,
        extra: list[Field],
        order: Field,
        descending: bool,
        limit: int | None,
        require: Field | None = None,
    ) -> pl.DataFrame:
        sql = self._builder()
        selected = [
            f"{COLUMNS[c]} AS c{i}" if c in COLUMNS else f"runs.{c} AS c{i}"
            for i, c in enumerate(BASE_COLUMNS)
        ]
        for i, f in enumerate(extra):
            number, text = sql.value_exprs(f)
            selected += [f"{number} AS x{i}", f"{text or 'NULL'} AS t{i}"]
        clauses = self._where(sql, filters)
        if require is not None:
            clauses.append(f"{sql.value_exprs(require)[0]} IS NOT NULL")
        text = f"SELECT {', '.join(selected)} FROM runs {' '.join(sql.joins)}"
        if clauses:
            text += " WHERE " + " AND ".join(clauses)
        text += f" ORDER BY {sql.order(order, descending)}, runs.run_dir"
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise QueryError(f"limit must be a non-negative integer; got {limit!r}")
            text += f" LIMIT {sql.param(limit)}"
        rows = self._conn.execute(text, sql.params).fetchall()
        return runs_frame(rows, extra)

    def _where(self, sql: SqlBuilder, filters: Filters) -> list[str]:
        status = COLUMNS["status"]
        clauses = []
        if filters.status:
            clauses.append(f"{status} IN ({', '.join(sql.param(s) for s in filters.status)})")
        clauses += [
            "EXISTS (SELECT 1 FROM tags WHERE tags.run_dir = runs.run_dir "
            f"AND tags.tag = {sql.param(tag)})"
            for tag in filters.tags
        ]
        if filters.alive is not None:
            clauses.append(f"{status} {'=' if filters.alive else '!='} 'running'")
        clauses += [sql.condition(parse_condition(c)) for c in filters.where]
        return clauses

    def _resolve(self, run: str) -> str:
        if not isinstance(run, str) or not run:
            raise UnknownRunError(f"a run id must be a non-empty string; got {run!r}")
        found = self._conn.execute(
            "SELECT run_dir, run_id FROM runs WHERE run_id = ? OR run_dir = ?",
            (run, str(Path(run).resolve())),
        ).fetchall()
        if not found:
            found = self._conn.execute(
                "SELECT run_dir, run_id FROM runs WHERE substr(run_id, 1, length(?)) = ?",
                (run, run),
            ).fetchall()
        if len(found) == 1:
            return str(found[0][0])
        scanned = iso_from_unix(self.scanned_at)
        if not found:
            raise UnknownRunError(
                f"no run {run!r} in the registry cache {self.cache} (scanned {scanned}); "
                "expected a run id, a unique prefix of one, or a run directory"
            )
        listed = ", ".join(f"{rid} ({d})" for d, rid in found[:10])
        raise UnknownRunError(f"{run!r} matches {len(found)} runs: {listed}; be more specific")

    def _frame(self, table: str, schema: dict[str, Any], run_dir: str, order: str) -> pl.DataFrame:
        # Table, column and order names come from the constants of this module.
        columns = ", ".join(schema)
        rows = self._conn.execute(
            f"SELECT {columns} FROM {table} WHERE run_dir = ? ORDER BY {order}", (run_dir,)
        ).fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def _wide_hparams(self, selected: set[str]) -> pl.DataFrame:
        rows = self._conn.execute("SELECT run_dir, key, value, num FROM hparams").fetchall()
        by_key: dict[str, dict[str, tuple[Any, Any]]] = {}
        for run_dir, key, value, num in rows:
            if run_dir in selected:
                by_key.setdefault(key, {})[run_dir] = (num, value)
        return wide_frame(
            selected, {f"hparams.{k}": (Field("hparam", k), v) for k, v in by_key.items()}
        )

    def _wide_summary(self, selected: set[str]) -> pl.DataFrame:
        stats = ("last", "min", "max", "count")
        rows = self._conn.execute(
            f"SELECT run_dir, metric, {', '.join(stats)} FROM summary"  # constant stat names
        ).fetchall()
        by_field: dict[str, tuple[Field, dict[str, tuple[Any, Any]]]] = {}
        for run_dir, metric, *values in rows:
            if run_dir not in selected:
                continue
            for stat, value in zip(stats, values, strict=True):
                f = Field("summary", metric, stat)
                by_field.setdefault(f.path, (f, {}))[1][run_dir] = (value, None)
        return wide_frame(selected, by_field)


__all__ = ["BASE_COLUMNS", "QUERY_STATUSES", "Filters", "Registry", "RunDetail"]
