"""The ``predstore`` command: one typer application, one sub-command per module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="predstore",
    help="Inspect, verify, finalize, export and view predstore stores; query a run registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

from predstore.cli import registry as _registry_cli  # noqa: E402

app.add_typer(_registry_cli.app, name="registry")

from predstore.cli import store as _store_cli  # noqa: E402

_store_cli.register(app)

from predstore.cli.view import view as _view  # noqa: E402

app.command()(_view)


def main() -> None:
    """Entry point of the ``predstore`` console script."""
    app()
