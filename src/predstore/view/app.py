"""The viewer's web application: one Starlette route per page, every page's state in its URL.

Pages are rendered on the server (Jinja2 templates shipped in the package);
charts are drawn in the browser by plotly's bundled JavaScript, served from
the installed ``plotly`` package, so nothing is fetched from the network.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import polars as pl
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from predstore.errors import (
    CorruptRunError,
    CorruptStoreError,
    FormatVersionError,
    PredstoreError,
    RegistryError,
    StoreNotCommittedError,
)
from predstore.read.inspect import human_bytes
from predstore.read.store import Store
from predstore.view import pictures, queries, runs
from predstore.view.security import Guard
from predstore.view.sources import Sources, retry_on_replaced

_PACKAGE = files("predstore.view")
#: Errors of the data rather than of the request: the page says what is wrong, status 503.
_DATA_ERRORS = (
    CorruptStoreError,
    CorruptRunError,
    FormatVersionError,
    StoreNotCommittedError,
    OSError,
)


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class BadRequest(PredstoreError, ValueError):
    """A URL parameter that is not what the page expects."""


def create_app(
    paths: list[str] | list[os.PathLike[str]] | list[str | os.PathLike[str]],
    *,
    token: str,
    hosts: frozenset[str] = frozenset(),
) -> Guard:
    """The viewer of ``paths`` (stores and registry roots) as an ASGI application.

    Example::

        from starlette.testclient import TestClient
        from predstore.view import create_app

        client = TestClient(create_app(["preds.pstore"], token="secret"))
        page = client.get("/rows", params={"token": "secret", "where": "prob < 0.5"})
    """
    sources = Sources(paths)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_PACKAGE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["number"] = _number
    env.filters["size"] = human_bytes
    env.filters["cell"] = _cell
    env.globals["zip"] = zip
    env.filters["tojson_attr"] = lambda v: json.dumps(v, default=str)
    view = _Views(sources, env)
    routes = [
        Route("/", view.home),
        Route("/runs", view.page(view.runs_page)),
        Route("/run", view.page(view.run_page)),
        Route("/media", view.media),
        Route("/store", view.page(view.overview)),
        Route("/rows", view.page(view.rows)),
        Route("/sample", view.page(view.sample)),
        Route("/confusion", view.page(view.confusion)),
        Route("/compare", view.page(view.compare)),
        Route("/compare/sample", view.page(view.compare_sample)),
        Route("/api/histogram", view.histogram),
        Route("/picture", view.picture),
        Route("/export", view.export),
        Route("/static/plotly.min.js", view.plotly),
        Mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    return Guard(app, token=token, hosts=hosts)


Page = tuple[str, dict[str, Any]]


class _Views:
    def __init__(self, sources: Sources, env: jinja2.Environment) -> None:
        self.sources, self.env = sources, env

    # -- rendering and errors -----------------------------------------------------------

    def page(self, build: Callable[[Request], Page]) -> Callable[[Request], Response]:
        """A page: ``build`` returns (template, context); a bad request or bad data becomes
        the page's error message, with status 400 or 503, never a server error."""

        def endpoint(request: Request) -> Response:
            try:
                template, context = build(request)
                status = 400 if context.get("error") else 200
            except _DATA_ERRORS as e:
                template, context, status = "error.html", {"error": _message(e)}, 503
            except (PredstoreError, ValueError, pl.exceptions.PolarsError) as e:
                template, context, status = "error.html", {"error": _message(e)}, 400
            return self.render(request, template, context, status)

        return endpoint

    def render(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        query = dict(request.query_params)
        query.pop("token", None)

        def href(route: str, **params: Any) -> str:
            kept = {k: v for k, v in params.items() if v not in (None, "", False)}
            return route + ("?" + urlencode(kept, doseq=True) if kept else "")

        def here(**changes: Any) -> str:
            return href(request.url.path, **{**query, **changes})

        html = self.env.get_template(template).render(
            **context,
            href=href,
            here=here,
            query=query,
            named_stores=self.sources.stores,
            has_registry=bool(self.sources.registries),
            path=request.url.path,
        )
        return HTMLResponse(html, status_code=status)

    def _store(self, request: Request, name: str = "store") -> Store:
        path = request.query_params.get(name) or (
            self.sources.stores[0] if self.sources.stores else ""
        )
        if not path:
            raise BadRequest(f"name a store with ?{name}=PATH")
        return self.sources.store(path)

    # -- pages --------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        if self.sources.registries:
            return RedirectResponse("/runs", status_code=303)
        return RedirectResponse("/store?" + urlencode({"store": self.sources.stores[0]}), 303)

    def runs_page(self, request: Request) -> Page:
        q = request.query_params
        where = [w for w in q.getlist("where") if w.strip()]
        tags = [t for t in q.getlist("tag") if t.strip()]
        selected = q.getlist("run")
        root, registry = self.sources.registry(q.get("root"))
        with registry:
            table = runs.runs_table(registry, where, tags, q.get("sort", ""), _flag(q.get("desc")))
            curves = runs.metric_curves(registry, selected) if selected else {}
        template = "runs_table.html" if q.get("fragment") else "runs.html"
        return template, {
            "root": str(root.root),
            "table": table,
            "where": where,
            "tags": tags,
            "selected": selected,
            "curves": curves,
            "sort": q.get("sort", ""),
            "desc": _flag(q.get("desc")),
            "scanned": datetime.now(UTC).strftime("%H:%M:%S"),
            "problems": [p for p in root.problems if p.fatal],
        }

    def run_page(self, request: Request) -> Page:
        run = request.query_params.get("run", "")
        _, registry = self.sources.registry(request.query_params.get("root"))
        with registry:
            detail = registry.show(run)
            media = runs.media(registry, run)
        return "run.html", {
            "run": run,
            "info": detail.info,
            "hparams": detail.hparams.to_dicts(),
            "summary": detail.summary.to_dicts(),
            "stores": detail.stores.to_dicts(),
            "problems": detail.problems.to_dicts(),
            "media": media,
        }

    def media(self, request: Request) -> Response:
        q = request.query_params
        try:
            _, registry = self.sources.registry(q.get("root"))
            with registry:
                path = runs.media_file(registry, q.get("run", ""), q.get("path", ""))
        except (RegistryError, ValueError) as e:
            return Response(_message(e), status_code=404, media_type="text/plain")
        return FileResponse(path)

    def overview(self, request: Request) -> Page:
        store = self._store(request)
        summary = retry_on_replaced(self.sources, store, queries.overview)
        return "overview.html", {"store": store.path, "o": summary, "schema": store.schema}

    def rows(self, request: Request) -> Page:
        q = request.query_params
        store = self._store(request)
        where, sort, desc = q.get("where", ""), q.get("sort", ""), _flag(q.get("desc"))
        context: dict[str, Any] = {
            "store": store.path,
            "where": where,
            "sort": sort,
            "desc": desc,
            "error": None,
            "page": None,
            "has_names": store.schema.names,
        }
        try:
            context["page"] = retry_on_replaced(
                self.sources,
                store,
                lambda s: queries.rows_page(
                    s, where, sort, desc, _int(q, "page", 1), _int(q, "size", 50)
                ),
            )
        except (PredstoreError, ValueError, pl.exceptions.PolarsError) as e:
            if isinstance(e, _DATA_ERRORS):
                raise
            context["error"] = _message(e)  # shown beside the filter box, the form stays usable
        return "rows.html", context

    def sample(self, request: Request) -> Page:
        q = request.query_params
        store = self._store(request)
        dl = _int(q, "dl", 0)
        index = queries.locate(store, _optional_int(q, "index"), q.get("name"), dl)
        return "sample.html", {"store": store.path, **self._sample(store, index, dl)}

    def _sample(self, store: Store, index: int, dl: int) -> dict[str, Any]:
        values = retry_on_replaced(
            self.sources, store, lambda s: queries.sample_values(s, index, dl)
        )
        before, after = queries.neighbours(store, index, dl)
        return {
            "index": index,
            "dl": dl,
            "name": queries.sample_name(store, index, dl),
            "shown": {k: pictures.describe(v) for k, v in values.items()},
            "before": before,
            "after": after,
        }

    def picture(self, request: Request) -> Response:
        q = request.query_params
        try:
            store = self._store(request)
            key = q.get("key", "")
            value = store.read(key, [_int(q, "index", 0)], dataloader_idx=_int(q, "dl", 0))[0]
            png = pictures.picture(value, key=key, z=_optional_int(q, "z"))
        except (PredstoreError, ValueError) as e:
            return Response(_message(e), status_code=400, media_type="text/plain")
        return Response(
            png, media_type="image/png", headers={"cache-control": "private, max-age=60"}
        )

    def histogram(self, request: Request) -> Response:
        try:
            store = self._store(request)
            key = request.query_params.get("key", "")
            result = self.sources.cached(
                store, ("histogram", key), lambda: queries.histogram(store, key)
            )
        except (PredstoreError, ValueError, pl.exceptions.PolarsError) as e:
            return JSONResponse({"error": _message(e)}, status_code=400)
        return JSONResponse(
            {
                "key": result.key,
                "labels": result.labels,
                "counts": result.counts,
                "filters": result.filters,
                "nulls": result.nulls,
                "other": result.other,
            }
        )

    def confusion(self, request: Request) -> Page:
        q = request.query_params
        store = self._store(request)
        default_pred, default_label = queries.default_pair(store)
        pred, label = q.get("pred") or default_pred, q.get("label") or default_label
        where = q.get("where", "")
        matrix = self.sources.cached(
            store,
            ("confusion", pred, label, where),
            lambda: queries.confusion(store, pred, label, where),
        )
        peak = max((max(row) for row in matrix.cells), default=0)
        return "confusion.html", {
            "store": store.path,
            "m": matrix,
            "peak": peak,
            "where": where,
            "choices": queries.label_keys(store),
        }

    def compare(self, request: Request) -> Page:
        q = request.query_params
        if not (q.get("a") and q.get("b")):
            return "compare_pick.html", {"allowed": self._comparable()}
        a, b = self._store(request, "a"), self._store(request, "b")
        key = q.get("key") or ("pred" if "pred" in a.schema.keys else queries.label_keys(a)[0])
        label = q.get(
            "label", "label" if "label" in queries.label_keys(a) and key != "label" else ""
        )
        on = q.get("on") or "index"
        result = self.sources.cached(
            a,
            ("compare", b.path, b.manifest.generation, key, label, on, q.get("list", "disagree")),
            lambda: queries.compare(a, b, key, label, on, q.get("list", "disagree")),
        )
        peak = max((max(row) for row in result.a_vs_b.cells), default=0)
        return "compare.html", {
            "a": a.path,
            "b": b.path,
            "c": result,
            "peak": peak,
            "choices": queries.label_keys(a),
        }

    def _comparable(self) -> list[str]:
        allowed = list(self.sources.stores)
        for registry in self.sources.registries:
            self.sources.refresh(registry)
            allowed += sorted(registry.stores - set(allowed))
        return allowed

    def compare_sample(self, request: Request) -> Page:
        q = request.query_params
        a, b = self._store(request, "a"), self._store(request, "b")
        dl = _int(q, "dl", 0)
        on = q.get("on") or "index"
        index = queries.locate(a, _optional_int(q, "index"), q.get("name"), dl)
        left = self._sample(a, index, dl)
        index_b = (
            queries.locate(b, None, left["name"], dl) if on == "name" and left["name"] else index
        )
        right = self._sample(b, index_b, dl)
        return "compare_sample.html", {
            "a": a.path,
            "b": b.path,
            "left": left,
            "right": right,
            "on": on,
        }

    def export(self, request: Request) -> Response:
        q = request.query_params
        fmt = q.get("format", "parquet")
        try:
            store = self._store(request)
            if fmt not in ("parquet", "indices"):
                raise BadRequest(f"export format is parquet or indices; got {fmt!r}")
            frame = queries.selection(
                store, q.get("where", ""), q.get("sort", ""), _flag(q.get("desc"))
            )
            stem = Path(store.path.rstrip("/")).stem or "selection"
            if fmt == "indices":
                pairs = frame.select("dataloader_idx", "index").collect()
                body = {
                    "store": store.path,
                    "where": q.get("where", ""),
                    "indices": {
                        str(dl): group["index"].to_list()
                        for (dl,), group in pairs.group_by("dataloader_idx", maintain_order=True)
                    },
                }
                return Response(
                    json.dumps(body),
                    media_type="application/json",
                    headers={"content-disposition": f'attachment; filename="{stem}-indices.json"'},
                )
            handle, out = tempfile.mkstemp(suffix=".parquet", prefix="predstore-view-")
            os.close(handle)
            frame.sink_parquet(out)
        except (PredstoreError, ValueError, pl.exceptions.PolarsError) as e:
            return Response(_message(e), status_code=400, media_type="text/plain")
        return FileResponse(
            out,
            filename=f"{stem}-selection.parquet",
            media_type="application/vnd.apache.parquet",
            background=BackgroundTask(os.unlink, out),
        )

    def plotly(self, request: Request) -> Response:
        return FileResponse(
            _plotly_js(), media_type="text/javascript", headers={"cache-control": "max-age=3600"}
        )


def _message(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0] if isinstance(error, pl.exceptions.PolarsError) else text


def _flag(value: str | None) -> bool:
    return value in ("1", "true", "on", "yes")


def _int(query: Any, name: str, default: int) -> int:
    value = _optional_int(query, name)
    return default if value is None else value


def _optional_int(query: Any, name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"?{name}= takes an integer; got {text!r}") from None


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _cell(value: Any) -> str:
    """A table cell: lists cut to their first values, floats to 4 significant digits."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        shape = []
        while isinstance(value, list):
            shape.append(len(value))
            value = value[0] if value else None
        return f"array [{' x '.join(map(str, shape))}]: see the sample"
    if isinstance(value, list):
        head = ", ".join(_cell(v) for v in value[:6])
        return f"[{head}{', …' if len(value) > 6 else ''}] ({len(value)})"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "null"
    return str(value)
