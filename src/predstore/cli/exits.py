"""How a command ends on an error: one line on stderr, and an exit status.

1 for a predstore error or a file system error (the store, the registry or
a file is not as expected), 2 for a usage error (options that do not go
together), as click does for the ones it finds itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

from predstore.errors import PredstoreError


@contextmanager
def friendly_errors() -> Iterator[None]:
    """predstore's errors and file system errors end the command with one line and exit status 1."""
    try:
        yield
    except PredstoreError as e:
        fail(str(e))
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}")


def fail(message: str, *, status: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr (on one line) and end the command with ``status``."""
    stderr().print(f"[bold red]error:[/] {' '.join(message.split())}", markup=True)
    raise typer.Exit(status) from None


def usage_error(message: str) -> NoReturn:
    """Options that do not go together: ``error: message`` and exit status 2."""
    fail(message, status=2)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)
