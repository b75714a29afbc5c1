"""The committed OpenAPI document matches the route table, and every route the worker serves has an entry."""

from __future__ import annotations

from pathlib import Path

import yaml

from meterseg.settings import Settings, StackSettings
from stream.web import openapi
from stream.web.routes import all_routes


def test_committed_openapi_is_current() -> None:
    assert not openapi.stale(), "run `python -m stream.web.openapi` and commit contracts/openapi.yaml"


def test_every_registered_route_has_a_spec_entry(tmp_path: Path) -> None:
    from stream.worker import build_app

    app, _ = build_app(Settings(stack=StackSettings(state_dir=tmp_path), api_token="openapi-test-token"))
    registered = set(app.web.views)
    doc = yaml.safe_load(openapi.SPEC_PATH.read_text())
    assert doc["openapi"] == "3.1.0"
    assert registered == set(doc["paths"]), registered ^ set(doc["paths"])
    for r in all_routes():
        op = doc["paths"][r.path][r.method.lower()]
        assert op["summary"] == r.summary
        if r.auth:
            assert "401" in op["responses"]
        else:
            assert op["security"] == []
    # literal paths must be registered before the parameterised sibling that would shadow them
    paths = [r.path for r in all_routes()]
    assert paths.index("/meters/top") < paths.index("/meters/{id}")
    assert paths.index("/meters/faulty") < paths.index("/meters/{id}")
