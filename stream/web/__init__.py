"""The analyst and service HTTP API, served by every worker's Faust web server.

One module per resource (:mod:`~stream.web.segments`, :mod:`~stream.web.customers`,
:mod:`~stream.web.meters`, :mod:`~stream.web.score`, :mod:`~stream.web.insights`)
declares its routes in the table of :mod:`stream.web.routes`;
:mod:`stream.web.server` serves them (auth, JSON errors) and
:mod:`stream.web.openapi` documents them. This package init imports nothing
heavy, so ``meterseg`` sub-commands that only need the spec stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import faust

    from meterseg.settings import Settings
    from stream.web.routes import Route

__all__ = ["register_api"]


def register_api(app: faust.App, settings: Settings, engine_getter: Callable[[], Any]) -> list[Route]:
    """Add every API route to ``app`` as a Faust view (see :func:`stream.web.server.register_api`)."""
    from stream.web.server import register_api as register

    return register(app, settings, engine_getter)
