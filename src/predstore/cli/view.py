"""``predstore view``: serve stores and registries to a browser."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from predstore.errors import PredstoreError


def view(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Stores and registry roots to show: directories, or stores at s3:// (gs://, "
            "az://) URLs configured by the standard environment variables (AWS_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID, ...).",
            show_default=False,
            metavar="STORE_OR_REGISTRY...",
        ),
    ],
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 0,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; anything but 127.0.0.1 exposes your data."),
    ] = "127.0.0.1",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the URL in a browser.")
    ] = False,
) -> None:
    """Start a local web viewer for stores and run registries and print its URL (with its token)."""
    errors = Console(stderr=True, highlight=False)
    try:
        from predstore.view import serve
    except ImportError as e:
        errors.print(
            f"[bold red]error:[/] predstore view needs the view extra ({e.name} is missing): "
            "pip install 'predstore[view]'"
        )
        raise typer.Exit(1) from None
    try:
        serve(
            paths,
            host=host,
            port=port,
            open_browser=open_browser,
            announce=lambda url: print(f"predstore view: {url}", flush=True),
        )
    except PredstoreError as e:
        errors.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(1) from None
    except OSError as e:
        errors.print(f"[bold red]error:[/] cannot listen on {host}:{port}: {e.strerror}")
        raise typer.Exit(1) from None
