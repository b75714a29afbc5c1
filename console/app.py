"""The console's Dash app: the shell (navigation, date and region filters), routing, export and session wiring.

Every page is rendered server-side from the API by one callback on the URL
and the filters (:func:`render`), so changing a filter re-renders the page;
a page's own controls (overlap pickers, lookalikes, the rule builder) have
their callbacks in the page's module. Component ids are stable: the browser
tests use them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs

import dash
import flask
from dash import Input, Output, dcc, html

from console import auth
from console.client import Api, ConsoleError, Prometheus
from console.context import ConsoleConfig, current_api, current_prometheus
from console.pages import builder, consumption, customer, health, overview, revenue, segments
from console.ui import CSS, Filters, error_box

log = logging.getLogger(__name__)

Page = Callable[[Api, Prometheus, Filters, dict[str, str]], Any]
PAGES: tuple[tuple[str, str, Page], ...] = (
    ("/", "Overview", overview.render),
    ("/consumption", "Consumption", consumption.render),
    ("/health", "Meter health", health.render),
    ("/revenue", "Revenue and operations", revenue.render),
    ("/segments", "Segments", segments.render),
    ("/client", "Client view", customer.render),
    ("/builder", "Rule builder", builder.render),
)


def _data_span(api: Api) -> tuple[list[str], str | None, str | None]:
    """Regions and the range of days with consumption (the default date range)."""
    try:
        daily = api.get("/fleet/daily")
    except ConsoleError:
        return [], None, None
    with_data = [d["day"] for d in daily.get("days", []) if d.get("meters")]
    if not with_data:
        return daily.get("regions", []), daily.get("from"), daily.get("to")
    return daily.get("regions", []), with_data[0], with_data[-1]


def shell() -> html.Div:
    """The page frame, built per page load (so the filters start on the days that have data)."""
    try:
        regions, start, end = _data_span(current_api())
    except ConsoleError:  # Dash validates the layout once at the first request, possibly before a sign-in
        regions, start, end = [], None, None
    lo = (date.fromisoformat(start) - timedelta(days=365)).isoformat() if start else None
    nav = [dcc.Link(title, href=path, id=f"nav-{path.strip('/') or 'overview'}") for path, title, _ in PAGES]
    return html.Div([
        dcc.Location(id="url", refresh=False),
        html.Div([html.Span("meterseg console", className="brand"), *nav,
                  html.A("sign out", href="/logout", id="logout", style={"marginLeft": "auto"})], className="top"),
        html.Div([
            html.Label("days (UTC, event time)"),
            dcc.DatePickerRange(id="f-dates", start_date=start, end_date=end, min_date_allowed=lo,
                                max_date_allowed=end, display_format="YYYY-MM-DD"),
            html.Label("region"),
            dcc.Dropdown(id="f-region", options=[{"label": r, "value": r} for r in regions], value=None,
                         placeholder="all regions", clearable=True, style={"width": "14em"}),
        ], className="filters"),
        dcc.Loading(html.Div(id="page"), type="dot", delay_show=400),
    ])  # fmt: skip


def render(pathname: str | None, search: str | None, start: str | None, end: str | None, region: str | None) -> Any:
    """The page at ``pathname`` for the filters; an API error becomes a message on the page."""
    page = next((p for p in PAGES if p[0] == (pathname or "/")), None)
    if page is None:
        return error_box(f"no page at {pathname}; use the links above")
    query = {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}
    filters = Filters(start[:10] if start else None, end[:10] if end else None, region or None)
    try:
        return html.Div(page[2](current_api(), current_prometheus(), filters, query), id=f"page-{page[1]}")
    except ConsoleError as exc:
        return error_box(str(exc), id="page-error")


def active_nav(pathname: str | None) -> list[str]:
    """Underline the navigation link of the page shown."""
    return ["active" if path == (pathname or "/") else "" for path, _, _ in PAGES]


def export_csv(segment_id: str) -> flask.Response:
    """The API's streamed CSV export passed through with the session's token (no token in the URL)."""
    try:
        upstream = current_api().stream(Api.seg_path(segment_id) + "/export.csv")
    except ConsoleError as exc:
        return flask.Response(str(exc), status=exc.status or 502, mimetype="text/plain")
    name = segment_id.replace(":", "_")
    return flask.Response(
        upstream.iter_content(64 * 1024),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def create_app(api_url: str, prometheus_url: str) -> dash.Dash:
    """The console for the engine API at ``api_url`` and Prometheus at ``prometheus_url``."""
    server = flask.Flask("console")
    server.config["METERSEG_CONSOLE"] = ConsoleConfig(api_url, prometheus_url)
    server.config["METERSEG_SESSIONS"] = auth.Sessions()
    auth.install(server, server.config["METERSEG_SESSIONS"], api_url)
    server.add_url_rule("/export/<segment_id>.csv", "export", export_csv)
    app = dash.Dash(
        "console",
        server=server,  # type: ignore[arg-type]  # a Flask app is accepted (Dash's stub says bool | callable)
        title="meterseg console",
        serve_locally=True,  # dash and plotly.js come from the installed packages, never a CDN
        suppress_callback_exceptions=True,
        update_title=None,  # type: ignore[arg-type]  # None: keep the title while callbacks run
        assets_folder="assets-none",  # no local assets: styles are inline below
    )
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    app.layout = shell
    app.callback(
        Output("page", "children"),
        Input("url", "pathname"),
        Input("url", "search"),
        Input("f-dates", "start_date"),
        Input("f-dates", "end_date"),
        Input("f-region", "value"),
    )(render)
    app.callback(
        [Output(f"nav-{path.strip('/') or 'overview'}", "className") for path, _, _ in PAGES], Input("url", "pathname")
    )(active_nav)
    for module in (segments, builder, customer):
        module.register(app)
    return app
