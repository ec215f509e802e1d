"""Row filters written as a SQL WHERE clause over a store's columns.

The one filter language of ``predstore export --where`` and the viewer: the
clause is parsed by polars (``polars.sql_expr``) into an expression over the
columns that ``store.scan()`` has (``index``, ``dataloader_idx``, ``name``
and the Parquet keys). Subqueries are refused before polars sees the text,
so a filter can never read a file; a column the store does not have is
refused by name.

Example::

    import polars as pl
    from predstore.read.filters import where_expr

    frame = pl.DataFrame({"index": [0, 1, 2], "prob": [0.2, 0.9, 0.4]})
    frame.filter(where_expr("prob < 0.5 AND index > 0", frame.columns))  # the row of index 2
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from predstore.errors import QueryError

# Quoted text, where SELECT and FROM are data, not SQL.
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_SUBQUERY = re.compile(r"\b(select|from|with)\b", re.IGNORECASE)


def where_expr(text: str, columns: Sequence[str]) -> pl.Expr:
    """A polars expression for the SQL WHERE clause ``text`` over ``columns``; ``QueryError`` otherwise."""
    clause = text.strip()
    if not clause:
        raise QueryError("the filter is empty; write a SQL WHERE clause such as `prob < 0.5`")
    subquery = _SUBQUERY.search(_QUOTED.sub("''", clause))
    if subquery:
        raise QueryError(
            f"the filter {clause!r} holds a subquery ({subquery.group(0).upper()}); "
            "a filter is a WHERE clause over the store's columns only"
        )
    try:
        expr = pl.sql_expr(clause)
    except Exception as e:  # polars raises several types, all meaning "did not parse"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QueryError(f"the filter {clause!r} did not parse: {reason}") from None
    unknown = sorted(set(expr.meta.root_names()) - set(columns))
    if unknown:
        raise QueryError(
            f"the filter {clause!r} names unknown column(s) {unknown}; the columns are "
            f'{list(columns)} (quote names with dots or spaces: "det.score")'
        )
    return expr
