"""The route table: one :class:`Route` per (method, path), the single source of the views and the OpenAPI document.

Each resource module declares its routes with :func:`route`; :func:`all_routes`
collects them in registration order (aiohttp resolves the first matching
resource, so ``/meters/top`` is declared before ``/meters/{id}``).
:func:`stream.web.register_api` turns the table into Faust views and
:mod:`stream.web.openapi` into ``contracts/openapi.yaml`` - so a route
without a spec entry cannot exist.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from stream.web.context import ApiContext
from stream.web.errors import ApiError, bad_request


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
        check_body(model, data)  # the document's JSON Schema first: false is not a number, "5" not an integer
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
    #: JSON Schemas of path parameters (default ``{"type": "string"}``): documented and enforced like query ones
    path_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_ROUTES: list[Route] = []

#: a segment id ``family:id`` as :func:`stream.web.segments.parse_segment_id` accepts it
SEGMENT_ID_PATTERN = "^(rfm|behaviour|rule):[\\s\\S]+$"
SEGMENT_ID_SCHEMA: Mapping[str, Any] = {"type": "string", "pattern": SEGMENT_ID_PATTERN, "maxLength": 200}
#: a rule segment's id (the only family that can be deleted)
RULE_SEGMENT_ID_SCHEMA: Mapping[str, Any] = {"type": "string", "pattern": "^rule:[A-Za-z0-9_.-]{1,64}$"}


def _query_value(raw: str, schema: Mapping[str, Any]) -> Any:
    """A query string value as the JSON value its schema describes (integers and numbers from their digits)."""
    kind = schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?[0-9]{1,30}", raw):
        return int(raw)
    if kind == "number" and re.fullmatch(r"-?[0-9]{1,30}(\.[0-9]{1,30})?", raw):
        return float(raw)
    return raw


@functools.cache
def _body_validator(model: type[BaseModel]) -> Any:
    from jsonschema import Draft202012Validator, FormatChecker

    return Draft202012Validator(model.model_json_schema(), format_checker=FormatChecker())


def check_body(model: type[BaseModel], data: Any) -> None:
    """422 ``validation_error`` (``detail``: loc, msg, type per problem) unless ``data`` matches the JSON Schema
    the OpenAPI document publishes for ``model``: the server accepts exactly what the document describes
    (pydantic's lax mode alone would take ``false`` as 0.0 and ``"5"`` as 5)."""
    errors = sorted(_body_validator(model).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        detail = [{"loc": list(e.absolute_path), "msg": e.message[:300], "type": str(e.validator)} for e in errors[:20]]
        raise ApiError(422, "validation_error", detail)


def check_parameters(r: Route, path: Mapping[str, str], query: Mapping[str, str]) -> None:
    """400 ``invalid_parameter`` for a path or query parameter its documented schema refuses.

    One check, driven by the same schemas :mod:`stream.web.openapi` publishes, so the document and the server
    agree on every parameter (an empty ``to=`` is not a date; ``limit=+5`` is not an integer).
    """
    from jsonschema import Draft202012Validator, FormatChecker

    declared = [(name, value, r.path_schemas.get(name)) for name, value in path.items()]
    declared += [(p.name, query[p.name], p.schema) for p in r.params if p.name in query]
    for name, raw, schema in declared:
        if not schema:
            continue
        errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(_query_value(raw, schema)))
        if errors:
            if schema is RULE_SEGMENT_ID_SCHEMA and raw.partition(":")[0] in ("rfm", "behaviour"):
                raise bad_request(f"only rule segments can be deleted; {raw.partition(':')[0]} segments come from "
                                  "the models", error="not_deletable")  # fmt: skip
            if schema is SEGMENT_ID_SCHEMA or schema is RULE_SEGMENT_ID_SCHEMA:
                raise bad_request(f"{name}: segment ids are family:id with family one of rfm, behaviour, rule"
                                  f"{' (only rule segments here)' if schema is RULE_SEGMENT_ID_SCHEMA else ''}; "
                                  f"got {raw[:200]!r}", error="invalid_segment_id")  # fmt: skip
            raise bad_request(f"{name}: {errors[0].message[:300]}", error="invalid_parameter")


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
    path_schemas: Mapping[str, Mapping[str, Any]] | None = None,
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
                dict(path_schemas or {}),
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
