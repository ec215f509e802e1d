"""``predstore view``: a local web viewer for stores and run registries.

Example::

    from predstore.view import serve

    serve(["preds.pstore"], port=8765)  # prints http://127.0.0.1:8765/?token=...

Needs the ``view`` extra (``pip install predstore[view]``): Starlette,
uvicorn, Jinja2 and plotly's bundled JavaScript. It reads stores through
:mod:`predstore.read` and registries through :mod:`predstore.registry` only.
"""

from predstore.view.app import create_app
from predstore.view.server import serve, viewer_url

__all__ = ["create_app", "serve", "viewer_url"]
