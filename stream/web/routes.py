"""The route table: one :class:`Route` per (method, path), the single source of the views and the OpenAPI document.

Each resource module declares its routes with :func:`route`; :func:`all_routes`
collects them in registration order (aiohttp resolves the first matching
resource, so ``/meters/top`` is declared before ``/meters/{id}``).
:func:`stream.web.register_api` turns the table into Faust views and
:mod:`stream.web.openapi` into ``contracts/openapi.yaml`` - so a route
without a spec entry cannot exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from stream.web.context import ApiContext
from stream.web.errors import bad_request


@dataclass(frozen=True)
class Param:
    """A query parameter (path parameters are taken from ``{name}`` in the path)."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass
class ApiRequest:
    """A request as handlers see it: path parameters, query, body, and the raw aiohttp request."""

    raw: web.Request
    path: dict[str, str]
    query: Mapping[str, str]

    async def json(self) -> Any:
        body = await self.raw.read()
        if not body:
            raise bad_request("a JSON request body is required", error="invalid_json")
        return orjson.loads(body)

    async def model(self, model: type[Any]) -> Any:
        """The body validated as ``model`` (pydantic; a ValidationError becomes a 422)."""
        data = await self.json()
        if not isinstance(data, dict):
            raise bad_request("the request body must be a JSON object", error="invalid_json")
        return model.model_validate(data)

    def arg(self, name: str, default: str | None = None) -> str | None:
        value = self.query.get(name)
        return default if value is None or value == "" else value


Handler = Callable[[ApiContext, ApiRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path, handler and what the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    description: str = ""
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | None = None
    response: Mapping[str, Any] | None = None
    example: Any = None
    errors: tuple[int, ...] = (400,)
    status: int = 200
    content_type: str = "application/json"
    auth: bool = True


_ROUTES: list[Route] = []


def route(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    description: str = "",
    params: tuple[Param, ...] = (),
    body: type[BaseModel] | None = None,
    response: Mapping[str, Any] | None = None,
    example: Any = None,
    errors: tuple[int, ...] = (400,),
    status: int = 200,
    content_type: str = "application/json",
    auth: bool = True,
) -> Callable[[Handler], Handler]:
    """Declare a handler as the endpoint ``method path``."""

    def deco(fn: Handler) -> Handler:
        _ROUTES.append(
            Route(
                method.upper(),
                path,
                fn,
                summary,
                tag,
                description or (fn.__doc__ or "").strip(),
                params,
                body,
                response,
                example,
                errors,
                status,
                content_type,
                auth,
            )
        )
        return fn

    return deco


def all_routes() -> list[Route]:
    """Every declared route, in declaration order (imports the resource modules)."""
    from stream.web import customers, fleet, insights, meters, openapi, preview, score, segments  # noqa: F401  (declare routes)

    return list(_ROUTES)


PAGE_PARAMS: tuple[Param, ...] = (
    Param("limit", "page size (1–1000, default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
    Param("offset", "offset of the first item (stable, sorted order)", {"type": "integer", "minimum": 0}),
)
PAGE_PARAMS_CURSOR: tuple[Param, ...] = (
    *PAGE_PARAMS,
    Param(
        "cursor",
        "opaque cursor from next_cursor (SSCAN paging, the default; not with offset)",
        {"type": "string", "pattern": "^[0-9]+$"},
    ),
)
