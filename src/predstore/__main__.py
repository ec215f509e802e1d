"""``python -m predstore``: the same as the ``predstore`` command."""

from predstore.cli import main

main()
