"""The ``predstore`` command: one typer application, one sub-command per module."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="predstore",
    help="Inspect, verify, finalize, export and view predstore stores; query a run registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no boxes when piped, no <bool> placeholders
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"predstore {version('predstore')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print predstore's version and exit.",
        ),
    ] = False,
) -> None:
    """Inspect, verify, finalize and export predstore stores; query a run registry."""


from predstore.cli import registry as _registry_cli  # noqa: E402

app.add_typer(_registry_cli.app, name="registry")

from predstore.cli import store as _store_cli  # noqa: E402

_store_cli.register(app)

from predstore.cli.view import view as _view  # noqa: E402

app.command()(_view)


def main() -> None:
    """Entry point of the ``predstore`` console script."""
    app()
