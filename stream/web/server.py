"""Serving the HTTP API from a worker's Faust web server (see :mod:`stream.web`).

:func:`register_api` turns the route table (:mod:`stream.web.routes`, one
module per resource: segments, customers, meters, score, insights) into
Faust views. Every call goes through :func:`_dispatch`: bearer-token check
(:mod:`stream.web.auth`), then the handler, with every exception mapped to a
JSON error (:mod:`stream.web.errors`) - bad input is a 4xx, never a 500.

Faust's web driver is aiohttp, so handlers may return an aiohttp
``StreamResponse`` they prepared themselves: that is how
``/segments/{id}/export.csv`` streams any size in chunks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import faust
from aiohttp import web
from faust.web import View

from meterseg.settings import Settings
from stream.web.auth import check_token
from stream.web.context import ApiContext
from stream.web.errors import EngineUnavailable, error_response, json_response
from stream.web.routes import ApiRequest, Route, all_routes, check_parameters

log = logging.getLogger(__name__)


class _ContextHolder:
    """One :class:`ApiContext` per engine instance (caches live as long as the engine)."""

    def __init__(self, settings: Settings, engine_getter: Callable[[], Any]):
        self.settings = settings
        self.engine_getter = engine_getter
        self.ctx: ApiContext | None = None

    def get(self) -> ApiContext:
        try:
            engine = self.engine_getter()
        except RuntimeError:
            raise EngineUnavailable() from None
        if engine is None or not getattr(engine, "started", True):
            raise EngineUnavailable()
        if self.ctx is None or self.ctx.engine is not engine:
            self.ctx = ApiContext.from_engine(self.settings, engine)
        return self.ctx


async def _dispatch(holder: _ContextHolder, r: Route, request: web.Request, path: dict[str, str]) -> web.StreamResponse:
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        if r.auth:
            check_token(request.headers, holder.settings.api_token)
        check_parameters(r, path, request.query)
        ctx = holder.get()
        result = await r.handler(ctx, ApiRequest(request, path, request.query))
        response = result if isinstance(result, web.StreamResponse) else json_response(result, r.status)
    except Exception as exc:
        response = error_response(exc)
    log.debug("%s %s -> %d in %.1f ms", r.method, request.path, response.status, 1e3 * (time.perf_counter() - started))
    return response


def _view(holder: _ContextHolder, methods: dict[str, Route]) -> type[View]:
    def handler(r: Route) -> Callable[..., Any]:
        async def method(self: View, request: Any, **kwargs: Any) -> Any:
            return await _dispatch(holder, r, request, {k: str(v) for k, v in kwargs.items()})

        return method

    attrs: dict[str, Any] = {m.lower(): handler(r) for m, r in methods.items()}
    attrs["__doc__"] = "; ".join(f"{m} {r.path}: {r.summary}" for m, r in methods.items())
    return type("ApiView", (View,), attrs)


def register_api(app: faust.App, settings: Settings, engine_getter: Callable[[], Any]) -> list[Route]:
    """Add every API route to ``app`` as a Faust view; ``engine_getter()`` returns the running Engine.

    Returns the routes registered (in registration order; aiohttp matches the
    first, so literal paths such as ``/meters/top`` precede ``/meters/{id}``).
    """
    holder = _ContextHolder(settings, engine_getter)
    routes = all_routes()
    by_path: dict[str, dict[str, Route]] = {}
    for r in routes:
        by_path.setdefault(r.path, {})[r.method] = r
    for i, (path, methods) in enumerate(by_path.items()):
        app.page(path, name=f"api_{i}")(_view(holder, methods))
    return routes
