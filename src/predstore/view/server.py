"""Starting the viewer: a uvicorn server on 127.0.0.1 by default, its URL with a fresh token."""

from __future__ import annotations

import os
import socket
import webbrowser
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import uvicorn

from predstore.view.app import create_app
from predstore.view.security import new_token


def viewer_url(host: str, port: int, token: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?{urlencode({'token': token})}"


def serve(
    paths: Sequence[str | os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve ``paths`` (stores and registry roots) until interrupted; ``port=0`` picks a free one.

    Example::

        serve(["preds.pstore", "runs"], port=8765, open_browser=True)
    """
    token = new_token()
    app = create_app(list(paths), token=token, hosts=frozenset({host}))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    url = viewer_url(host, sock.getsockname()[1], token)
    announce(url)
    if open_browser:
        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
