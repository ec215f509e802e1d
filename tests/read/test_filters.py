from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from predstore.errors import QueryError, RegistryError
from predstore.read.filters import where_expr

FRAME = pl.DataFrame(
    {"index": [0, 1, 2, 3], "name": ["a", "b", "ab", None], "prob": [0.1, 0.9, 0.4, 0.7]}
)


def rows(text: str) -> list[int]:
    return FRAME.filter(where_expr(text, FRAME.columns))["index"].to_list()


def test_where_clauses_select_rows() -> None:
    assert rows("prob < 0.5") == [0, 2]
    assert rows("prob > 0.3 AND name LIKE 'a%'") == [2]
    assert rows("index IN (1, 3) OR name = 'a'") == [0, 1, 3]
    assert rows("name IS NULL") == [3]
    assert rows("'select' = 'select' AND index = 2") == [2]  # keywords inside strings are data


def test_a_dotted_key_is_quoted() -> None:
    frame = pl.DataFrame({"det.score": [0.2, 0.8]})
    assert frame.filter(where_expr('"det.score" > 0.5', frame.columns)).height == 1


def test_unknown_columns_are_named() -> None:
    with pytest.raises(
        QueryError, match=r"unknown column\(s\) \['label'\]; the columns are"
    ) as raised:
        where_expr("label = 1 AND prob > 0", FRAME.columns)
    # A store's filter error is caught as a query error, never as a registry's.
    assert not isinstance(raised.value, RegistryError)


def test_what_does_not_parse_is_one_line() -> None:
    with pytest.raises(QueryError, match="did not parse") as raised:
        where_expr("prob <", FRAME.columns)
    assert "\n" not in str(raised.value)
    with pytest.raises(QueryError, match="empty"):
        where_expr("  ", FRAME.columns)
    assert isinstance(raised.value, ValueError)


def test_a_filter_cannot_read_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.parquet"
    pl.DataFrame({"index": [1]}).write_parquet(secret)
    for text in (
        f"index IN (SELECT index FROM read_parquet('{secret}'))",
        "index = (select 1)",
    ):
        with pytest.raises(QueryError, match="subquery"):
            where_expr(text, FRAME.columns)
    with pytest.raises(QueryError, match="did not parse"):
        where_expr(f"read_parquet('{secret}') IS NULL", FRAME.columns)
