"""How the commands print: rich on a terminal, plain tab-separated text when piped.

On a terminal, tables shrink their columns (cutting long values with an
ellipsis, never folding them) and the first column never shrinks. Piped
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
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for at, header in enumerate(headers):
        longest = max([len(header), *(len(r[at]) for r in rows)])
        table.add_column(
            header,
            justify="right" if header in RIGHT else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=longest if at == 0 else min(longest, 6),
        )
    for row in rows:
        table.add_row(*row)
    console().print(table)


def print_line(text: str) -> None:
    """A line of text, never wrapped when piped."""
    if stdout_is_terminal():
        console().print(text, markup=False)
    else:
        sys.stdout.write(text + "\n")


def _plain(value: str) -> str:
    return _SPACES.sub(" ", value)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr while the block runs, when stderr is a terminal; yields ``advance(n)``.

    ``total=None`` shows a spinner with the elapsed time (for work of unknown size).
    """
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    columns = (
        [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
        if total is None
        else [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
