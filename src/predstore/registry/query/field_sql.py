"""The fields a registry query may sort and filter by, and their safe translation to SQL.

A field is one of:

- a known column: ``run_id``, ``name``, ``status``, ``created_at``, ...
  (see :data:`COLUMNS`);
- ``summary.<metric>`` (the metric's last value) or ``summary.<metric>:<stat>``
  with ``<stat>`` one of ``last min max count nan_count step epoch min_step
  max_step``;
- ``hparams.<key>``, with the key flattened with dots as in the sidecar.

Metric names and hyperparameter keys are never pasted into SQL: each becomes
a bound parameter of a ``LEFT JOIN``, and every piece of SQL text comes from
the tables in this module. A condition is ``FIELD OP VALUE`` with ``OP`` one of
``= == != < <= > >=``; the value compares as a number when it parses as one,
otherwise as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from predstore.errors import QueryError
from predstore.registry.rundir.liveness import status_sql

#: Known columns: public name -> SQL expression over the ``runs`` table.
COLUMNS: dict[str, str] = {
    "run_id": "runs.run_id",
    "display_name": "runs.display_name",
    "status": status_sql(),
    "created_at": "runs.created_at",
    "started_at": "runs.started_at",
    "updated_at": "runs.updated_at",
    "ended_at": "runs.ended_at",
    "last_seen": "runs.last_seen",
    "attempt": "runs.attempt",
    "host": "runs.host",
    "step": "runs.step",
    "notes": "runs.notes",
    "best_checkpoint": "runs.best_checkpoint",
    "error": "runs.error",
    "media_count": "runs.media_count",
    "heartbeat_interval": "runs.heartbeat_interval",
    "run_dir": "runs.run_dir",
}
NUMERIC_COLUMNS = frozenset({"last_seen", "attempt", "step", "media_count", "heartbeat_interval"})
STATS = ("last", "min", "max", "count", "nan_count", "step", "epoch", "min_step", "max_step")
OPERATORS = {"=": "=", "==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

_CONDITION = re.compile(r"^\s*(?P<field>.+?)\s*(?P<op>==|!=|<=|>=|=|<|>)\s*(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class Field:
    """A parsed field path."""

    kind: Literal["column", "summary", "hparam"]
    name: str  # column name, metric name or hyperparameter key
    stat: str = "last"

    @property
    def path(self) -> str:
        """The canonical spelling, also the name of the output column."""
        if self.kind == "column":
            return self.name
        if self.kind == "hparam":
            return f"hparams.{self.name}"
        suffix = "" if self.stat == "last" else f":{self.stat}"
        return f"summary.{self.name}{suffix}"


@dataclass(frozen=True)
class Condition:
    field: Field
    op: str
    value: str | float


def parse_field(path: str) -> Field:
    """Parse ``path``; raise :class:`QueryError` if it names no known field."""
    if not isinstance(path, str):
        raise QueryError(f"a field must be a string; got {path!r}")
    if path in COLUMNS:
        return Field("column", path)
    if path.startswith("summary."):
        metric, stat = path[len("summary.") :], "last"
        head, sep, tail = metric.rpartition(":")
        if sep and tail in STATS:
            metric, stat = head, tail
        if metric:
            return Field("summary", metric, stat)
    if path.startswith("hparams.") and len(path) > len("hparams."):
        return Field("hparam", path[len("hparams.") :])
    raise QueryError(
        f"unknown field {path!r}; expected one of {', '.join(COLUMNS)}, "
        f"summary.<metric>[:{'|'.join(STATS)}] or hparams.<key>"
    )


def parse_condition(condition: str | tuple[str, str, Any]) -> Condition:
    """Parse ``"FIELD OP VALUE"`` (or a ``(field, op, value)`` tuple)."""
    if isinstance(condition, tuple):
        if len(condition) != 3:
            raise QueryError(f"a condition tuple needs (field, op, value); got {condition!r}")
        path, op, raw = condition
    else:
        match = _CONDITION.match(condition) if isinstance(condition, str) else None
        if match is None:
            raise QueryError(
                f"cannot parse condition {condition!r}; expected FIELD OP VALUE with OP one "
                f"of {' '.join(OPERATORS)}, e.g. 'hparams.lr<=0.01' or 'summary.val_loss:min<0.3'"
            )
        path, op, raw = match["field"], match["op"], match["value"]
    if op not in OPERATORS:
        raise QueryError(f"unknown operator {op!r}; expected one of {' '.join(OPERATORS)}")
    field = parse_field(path)
    return Condition(field, OPERATORS[op], _typed_value(field, raw))


def _typed_value(field: Field, raw: Any) -> str | float:
    numeric = field.kind == "summary" or (field.kind == "column" and field.name in NUMERIC_COLUMNS)
    if field.kind == "column" and not numeric:
        return str(raw)  # text columns compare as text: run_id=123 means the string "123"
    if isinstance(raw, bool):
        return "true" if raw else "false"  # as JSON spells it in the hparams table
    if isinstance(raw, (int, float)):
        return float(raw)
    text = str(raw)
    try:
        return float(text)
    except ValueError:
        pass
    if numeric:
        raise QueryError(f"{field.path} is numeric; cannot compare it with {text!r}")
    return text


class SqlBuilder:
    """Collects joins and bound parameters for one query."""

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = dict(params or {})
        self.joins: list[str] = []
        self._aliases: dict[tuple[str, str], str] = {}

    def param(self, value: Any) -> str:
        """Bind ``value`` and return its placeholder."""
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def _join(self, table: Literal["summary", "hparams"], key: str) -> str:
        alias = self._aliases.get((table, key))
        if alias is None:
            alias = f"j{len(self._aliases)}"
            column = "metric" if table == "summary" else "key"
            self.joins.append(
                f"LEFT JOIN {table} AS {alias} ON {alias}.run_dir = runs.run_dir "
                f"AND {alias}.{column} = {self.param(key)}"
            )
            self._aliases[(table, key)] = alias
        return alias

    def value_exprs(self, field: Field) -> tuple[str, str | None]:
        """SQL for the field's value: (numeric-or-only expression, text expression or None)."""
        if field.kind == "column":
            return COLUMNS[field.name], None
        if field.kind == "summary":
            return f"{self._join('summary', field.name)}.{field.stat}", None
        alias = self._join("hparams", field.name)
        return f"{alias}.num", f"{alias}.value"

    def condition(self, cond: Condition) -> str:
        number, text = self.value_exprs(cond.field)
        target = number if isinstance(cond.value, float) or text is None else text
        return f"{target} {cond.op} {self.param(cond.value)}"

    def order(self, field: Field, descending: bool) -> str:
        """ORDER BY terms: missing values last in either direction."""
        direction = "DESC" if descending else "ASC"
        number, text = self.value_exprs(field)
        if text is None:
            return f"({number} IS NULL), {number} {direction}"
        # Hyperparameters: numbers before text, missing last.
        return f"({text} IS NULL), ({number} IS NULL), {number} {direction}, {text} {direction}"
