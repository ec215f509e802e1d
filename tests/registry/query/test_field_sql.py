"""Field paths and conditions: parsed strictly, translated with bound parameters only."""

from __future__ import annotations

import pytest

from predstore.errors import QueryError
from predstore.registry.query.field_sql import (
    COLUMNS,
    Field,
    SqlBuilder,
    parse_condition,
    parse_field,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("created_at", Field("column", "created_at")),
        ("summary.val_loss", Field("summary", "val_loss", "last")),
        ("summary.val_loss:min", Field("summary", "val_loss", "min")),
        ("summary.val/loss:max_step", Field("summary", "val/loss", "max_step")),
        ("summary.a.b:c", Field("summary", "a.b:c", "last")),  # ':c' is no statistic
        ("hparams.model.depth", Field("hparam", "model.depth")),
    ],
)
def test_parse_field(path: str, expected: Field) -> None:
    field = parse_field(path)
    assert field == expected
    assert parse_field(field.path) == field


@pytest.mark.parametrize(
    "path", ["", "val_loss", "summary.", "hparams.", "runs.status", "created_at; DROP TABLE runs"]
)
def test_unknown_fields_are_refused(path: str) -> None:
    with pytest.raises(QueryError, match="unknown field"):
        parse_field(path)


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ("hparams.lr<=0.01", "<=", 0.01),
        ("hparams.optimizer == adam", "=", "adam"),
        ("summary.val_loss:min<0.3", "<", 0.3),
        ("status!=running", "!=", "running"),
        ("run_id=007", "=", "007"),  # text columns compare as text
        ("attempt>1", ">", 1.0),
    ],
)
def test_parse_condition(text: str, op: str, value: object) -> None:
    condition = parse_condition(text)
    assert (condition.op, condition.value) == (op, value)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("hparams.lr", "cannot parse condition"),
        ("nope=1", "unknown field"),
        ("summary.loss<low", "numeric"),
        (("hparams.lr", "~", 1), "unknown operator"),
        (("hparams.lr", "<"), "needs \\(field, op, value\\)"),
    ],
)
def test_bad_conditions(condition: object, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_condition(condition)  # type: ignore[arg-type]


def test_names_and_values_only_ever_reach_sql_as_parameters() -> None:
    hostile = "x' OR 1=1; DROP TABLE runs; --"
    sql = SqlBuilder()
    clause = sql.condition(parse_condition(("hparams." + hostile, "=", hostile)))
    order = sql.order(parse_field("summary." + hostile), descending=True)
    text = " ".join([*sql.joins, clause, order])
    assert hostile not in text
    assert "DROP" not in text
    assert list(sql.params.values()).count(hostile) == 3  # two join keys and one value
    assert all(expr not in hostile for expr in COLUMNS.values())
