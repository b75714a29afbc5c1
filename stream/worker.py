"""A meterseg worker: the Faust app with the engine service and its web views."""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.web import Request, Response, View

from meterseg.settings import DEFAULT_API_TOKEN, Settings
from stream.agents.operations import register_operations
from stream.app import create_app
from stream.engine import Engine, engine_class
from stream.web import register_api
from stream.web.auth import require_secret_token

log = logging.getLogger(__name__)


def _require(engine: Engine | None) -> Engine:
    if engine is None:
        raise RuntimeError("the engine service has not started yet")
    return engine


def build_app(settings: Settings, **overrides: Any) -> tuple[faust.App, type[Engine]]:
    """The worker's Faust app and the engine service class registered with it.

    Raises :class:`stream.web.auth.InsecureApiToken` for the default API token without the development flag.
    """
    require_secret_token(settings)  # InsecureApiToken: the default token serves customer data to anyone
    if settings.api_token == DEFAULT_API_TOKEN:
        log.warning(
            "METERSEG_API_ALLOW_DEFAULT_TOKEN=true: the API on port %d accepts the published default token "
            "(development only)",
            settings.web_port,
        )
    app = create_app(settings, **overrides)
    engine_cls = engine_class(settings)
    app.service(engine_cls)

    def engine() -> Engine | None:
        for service in app._extra_service_instances or []:
            if isinstance(service, Engine):
                return service
        return None

    register_operations(app, settings, lambda: _require(engine()))
    register_api(app, settings, lambda: _require(engine()))

    @app.page("/health")
    class Health(View):
        """Liveness: 200 while the worker does its work, 503 when it has not started or stalled (with the reasons:
        no poll, failing batches, records waiting without progress, failing or stopped timer; see
        :meth:`stream.engine.Engine.stall_reasons`)."""

        async def get(self, request: Request) -> Response:
            eng = engine()
            if eng is None or not eng.started:
                return self.json({"status": "starting"}, status=503)
            body = eng.health()
            return self.json(body, status=200 if body["status"] == "ok" else 503)

    return app, engine_cls
