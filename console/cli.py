"""``meterseg console``: serve the web console on its own port, beside a worker's API.

Registered in ``meterseg.cli.COMMAND_MODULES``; Dash is imported only when
the command runs, so the other sub-commands stay fast.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

DEFAULT_PORT = 8050


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "console",
        help="serve the web console (overview, consumption, meter health, revenue, segments, clients, rule builder)",
        description="Serve the operators' and analysts' web console. It reads only the engine's HTTP API (sign in "
        "with METERSEG_API_TOKEN) and Prometheus.",
    )
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1; METERSEG_CONSOLE_HOST)")
    p.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT}; METERSEG_CONSOLE_PORT)")
    p.add_argument("--api-url", default=None,
                   help="the engine API (default http://127.0.0.1:METERSEG_WEB_PORT; METERSEG_CONSOLE_API_URL)")  # fmt: skip
    p.add_argument("--prometheus-url", default=None,
                   help="Prometheus (default the local stack's; METERSEG_CONSOLE_PROMETHEUS_URL)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from werkzeug.serving import run_simple

    from console.app import create_app
    from meterseg.settings import Settings

    settings = Settings()  # command-line options win over the METERSEG_CONSOLE_* settings
    host = args.host or settings.console_host
    port = args.port or settings.console_port
    api_url = args.api_url or settings.console_api_url or f"http://127.0.0.1:{settings.web_port}"
    prometheus_url = (args.prometheus_url or settings.console_prometheus_url
                      or f"http://127.0.0.1:{settings.stack.prometheus_port}")  # fmt: skip
    app = create_app(api_url, prometheus_url)
    print(f"meterseg console on http://{host}:{port}/ (API {api_url}, Prometheus {prometheus_url})", flush=True)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    run_simple(host, port, app.server, threaded=True, use_reloader=False, use_debugger=False)
    return 0
