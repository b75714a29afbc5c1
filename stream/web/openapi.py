"""The OpenAPI 3.1 document of the HTTP API, built from the route table in code.

``contracts/openapi.yaml`` is generated from :func:`document` (``python -m
stream.web.openapi`` rewrites it, ``--check`` fails when it is stale) and a
test keeps it equal to the routes the worker actually registers, so the
document cannot drift from the code. Request bodies are the pydantic models'
JSON Schemas (OpenAPI 3.1 uses JSON Schema 2020-12 directly).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from stream.web.context import ApiContext
from stream.web.errors import ERROR_SCHEMA
from stream.web.routes import ApiRequest, Route, all_routes, route

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "contracts" / "openapi.yaml"

EXTERNAL_PATHS: dict[str, dict[str, Any]] = {
    "/health": {
        "get": {
            "operationId": "health",
            "tags": ["operations"],
            "summary": "Liveness: 200 while the worker processes, 503 when starting or stalled, with the reasons (no token needed)",
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}},
                          "503": {"description": "starting or stalled"}},
            "security": [],
        }
    }
}  # fmt: skip
"""Routes registered by ``stream/worker.py`` itself rather than by :func:`stream.web.register_api`."""

STATUS_TEXT = {200: "OK", 201: "Created", 400: "Bad request", 401: "Missing or invalid bearer token",
               404: "Not found", 409: "Conflict", 422: "Invalid request body", 503: "Not ready"}  # fmt: skip


def _operation(r: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": dict(r.path_schemas.get(name, {"type": "string"})),
         "description": "segment id family:id, e.g. rfm:champions" if "segments" in r.path and name == "id" else f"{name}"}
        for name in re.findall(r"{(\w+)}", r.path)
    ]  # fmt: skip
    params += [
        {"name": p.name, "in": "query", "required": p.required, "schema": dict(p.schema), "description": p.description}
        for p in r.params
    ]
    op: dict[str, Any] = {
        "operationId": r.handler.__name__,
        "tags": [r.tag],
        "summary": r.summary,
    }
    if r.description:
        op["description"] = r.description
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.body.__name__}"}}},
        }
    schema = dict(r.response) if r.response else {"type": "object"}
    responses: dict[str, Any] = {str(r.status): {"description": STATUS_TEXT.get(r.status, "OK"),
                                                 "content": {r.content_type: {"schema": schema}}}}  # fmt: skip
    errors = set(r.errors) | ({401} if r.auth else set())
    for status in sorted(errors):
        responses[str(status)] = {
            "description": STATUS_TEXT.get(status, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    op["responses"] = responses
    if not r.auth:
        op["security"] = []
    return op


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    routes = all_routes()
    models = sorted({r.body for r in routes if r.body is not None}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA, **defs.get("$defs", {})}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, schemas)
    paths.update(EXTERNAL_PATHS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meterseg API",
            "version": "1",
            "description": (
                "Segments, customers, scoring, insights and meters of a meterseg deployment. "
                "Every route but /health and /openapi.json needs `Authorization: Bearer <METERSEG_API_TOKEN>`. "
                "Errors are JSON {error, detail}. Segment ids are family:id (rfm:champions, "
                "behaviour:B1, rule:north_big)."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:6066", "description": "a local worker (METERSEG_WEB_PORT)"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=120)


def stale() -> bool:
    """Whether the committed ``contracts/openapi.yaml`` differs from the code."""
    return not SPEC_PATH.exists() or SPEC_PATH.read_text(encoding="utf-8") != render()


@route("GET", "/openapi.json", summary="This OpenAPI document (no token needed)", tag="operations", auth=False,
       errors=())  # fmt: skip
async def openapi_json(ctx: ApiContext, req: ApiRequest) -> Any:
    return document()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meterseg api-spec", description="write contracts/openapi.yaml")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is stale")
    args = parser.parse_args(argv)
    if args.check:
        if stale():
            print(f"{SPEC_PATH} is stale: run python -m stream.web.openapi", file=sys.stderr)
            return 1
        return 0
    SPEC_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {SPEC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
