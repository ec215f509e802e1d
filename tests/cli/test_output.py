"""How the commands lay out tables on a terminal: the widest columns shrink first."""

from __future__ import annotations

from predstore.cli.output import _fit


def test_columns_that_fit_keep_their_width() -> None:
    assert _fit([["key", "logits"], ["dtype", "float32"]], 80) == [6, 7]


def test_the_widest_columns_shrink_first_and_the_first_never() -> None:
    columns = [["write", "w" * 30], ["mode", "error"], ["started", "s" * 29], ["ended", "e" * 29]]
    widths = _fit(columns, 80)
    assert widths is not None and sum(widths) + 3 * 3 <= 80
    assert widths[0] == 30 and widths[1] == 5  # the first column whole, a narrow one untouched
    assert abs(widths[2] - widths[3]) <= 1  # the two wide ones share the cut


def test_too_narrow_for_a_table() -> None:
    assert _fit([["key", "k" * 40], ["storage", "parquet"], ["dtype", "float32"]], 45) is None
