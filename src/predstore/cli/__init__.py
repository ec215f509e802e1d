"""The ``predstore`` command line."""

from predstore.cli.app import app, main

__all__ = ["app", "main"]
