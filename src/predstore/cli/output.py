"""How the commands print: rich on a terminal, plain tab-separated text when piped.

On a terminal, tables shrink their widest columns first (cutting long
values with an ellipsis, never folding them), the first column never; when
even that does not fit, each row is printed as ``header: value`` lines. Piped
output is one tab-separated line per row, a header line first and a blank
line between tables (titles go to stderr), with tabs and newlines inside values replaced by spaces:
what ``cut``, ``awk`` and ``pandas.read_csv(sep="\\t")`` read. Progress bars
go to stderr, and only when it is a terminal.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

_SPACES = re.compile(r"[\t\r\n]+")
RIGHT = frozenset({"expected", "written", "unique", "duplicates", "missing", "on disk", "raw"})


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def console() -> Console:
    # Made per command, so that COLUMNS and redirection are read when the command runs.
    return Console(highlight=False, soft_wrap=not stdout_is_terminal())


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table: rich with shrinking columns on a terminal; piped, tab-separated lines (the title on stderr)."""
    if not stdout_is_terminal():
        if title:
            sys.stderr.write(title + "\n")
        lines = ["\t".join(map(_plain, headers)), *("\t".join(map(_plain, r)) for r in rows)]
        sys.stdout.write("\n".join(lines) + "\n\n")
        return
    out = console()
    widths = _fit([[h, *(r[at] for r in rows)] for at, h in enumerate(headers)], out.width)
    if widths is None:  # too narrow for a table: one block of "header: value" lines per row
        out.print(title, style="bold", markup=False)
        for row in rows:
            for header, value in zip(headers, row, strict=True):
                out.print(f"  {header}: {value}", markup=False, overflow="ignore", crop=False)
            out.print()
        return
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for header, width in zip(headers, widths, strict=True):
        justify: Literal["left", "right"] = "right" if header in RIGHT else "left"
        table.add_column(header, justify=justify, no_wrap=True, overflow="ellipsis", width=width)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def _fit(columns: list[list[str]], width: int) -> list[int] | None:
    """Column widths that fit ``width``: the widest columns shrink first, the first never.

    A column shrinks no further than its header (at most 8 characters);
    ``None`` when even that does not fit.
    """
    widths = [max(len(v) for v in column) for column in columns]
    floors = [
        widths[0],
        *(min(w, max(3, min(len(c[0]), 8))) for w, c in zip(widths[1:], columns[1:], strict=True)),
    ]
    room = width - 3 * (len(columns) - 1)  # " │ " between columns
    if sum(floors) > room:
        return None
    while sum(widths) > room:
        at = max(range(len(widths)), key=lambda i: widths[i] if widths[i] > floors[i] else -1)
        widths[at] -= 1
    return widths


def print_line(text: str) -> None:
    """A line of text, never wrapped when piped."""
    if stdout_is_terminal():
        console().print(text, markup=False)
    else:
        sys.stdout.write(text + "\n")


def _plain(value: str) -> str:
    return _SPACES.sub(" ", value)


@contextmanager
def progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress indicator on stderr while the block runs, when stderr is a terminal.

    Yields ``update(done, total)``: a bar once the work reports its size, a
    spinner with the elapsed time until then (and for work that never does).
    """
    if not sys.stderr.isatty():
        yield lambda done, total: None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
