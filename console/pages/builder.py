"""Rule segment builder: type a rule, see errors with their position as you type, preview the size and members,
save it as a static or dynamic rule segment.

Every keystroke calls ``GET /rules/preview`` (which validates exactly as
``POST /segments`` does and changes nothing); an error shows the API's line,
column and a caret under the offending character. ``?rule=`` pre-fills the
editor (the suggested segments link here).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import dash
from dash import Input, Output, State, dcc, html

from console.client import Api, ConsoleError, Prometheus
from console.context import current_api
from console.ui import Filters, error_box, link, num, section

EXAMPLE = 'region == "North" and rfm.monetary_mean > 50'
ATTRIBUTE_HELP = (
    "attributes: region, tariff, has_export, health.state, clv, churn.probability, behaviour.segment, "
    "rfm.* (frequency, recency_days, days_since_last, monetary_mean, total_spend, r_score, f_score, m_score, segment), "
    "features.* (mean_daily_kwh, peak_to_average, share_night, share_morning, share_daytime, share_evening, "
    "weekday_weekend_ratio, export_share, variability); operators == != < <= > >= in, and, or, not"
)


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    rule = query.get("rule", EXAMPLE)
    return [
        section("Rule", dcc.Textarea(id="rule-text", value=rule, spellCheck=False,
                                     style={"width": "100%", "height": "6em"}),
                html.P(ATTRIBUTE_HELP, className="note"), html.Div(id="rule-status")),
        section("Save as a segment",
                html.Div([
                    dcc.Input(id="save-id", type="text", placeholder="id (letters, digits, _ - .)"),
                    dcc.Input(id="save-name", type="text", placeholder="name"),
                    dcc.RadioItems(id="save-mode", value="static", inline=True, options=[
                        {"label": " static (evaluated once, now)", "value": "static"},
                        {"label": " dynamic (follows every customer's changes)", "value": "dynamic"}]),
                    html.Button("save segment", id="save-btn"),
                ], style={"display": "flex", "gap": "1em", "alignItems": "center", "flexWrap": "wrap"}),
                html.Div(id="save-out")),
    ]  # fmt: skip


def caret_lines(text: str, line: int, column: int) -> str:
    """The offending line and a caret under the column (1-based), as the API's message shows them."""
    lines = text.split("\n")
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"{src}\n{' ' * (column - 1)}^"


def check(text: str | None) -> Any:
    if not text or not text.strip():
        return html.P("type a rule", className="note", id="rule-empty")
    try:
        p = current_api().get("/rules/preview", expression=text, limit=30)
    except ConsoleError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        if body.get("error") != "invalid_rule" or "line" not in body:
            return error_box(str(exc), id="rule-failure")
        return html.Div([
            html.Div(f"line {body['line']}, column {body['column']}: {body['detail']}", id="rule-error-message"),
            html.Pre(caret_lines(text, body["line"], body["column"]), className="caret", id="rule-caret"),
        ], className="error-box", id="rule-error",
           **{"data-line": body["line"], "data-column": body["column"], "data-offset": body["offset"]})  # fmt: skip
    members = [link(c, "/client?" + urlencode({"id": c})) for c in p["sample"]]
    return html.Div([
        html.Div([html.Span(num(p["size"]), id="rule-size"), f" of {num(p['population'])} customers match"],
                 className="ok-box", id="rule-ok"),
        html.H4("First members"),
        html.Div(members, id="rule-members", style={"display": "flex", "flexWrap": "wrap", "gap": ".4em 1em"}),
    ])  # fmt: skip


def save(clicks: int | None, text: str | None, sid: str | None, name: str | None, mode: str) -> Any:
    if not clicks:
        return dash.no_update
    if not sid or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", sid):
        return error_box("give an id of letters, digits, _ - . (at most 64)", id="save-error")
    try:
        out = current_api().post("/segments", {"id": sid, "name": name or sid, "expression": text, "mode": mode})
    except ConsoleError as exc:
        return error_box(str(exc), id="save-error")
    size = f"{out['size']} members" if out.get("size") is not None else "members are being evaluated by the workers"
    return html.Div([f"saved {out['id']} ({out['status']}): {size} · ",
                     link("open it", "/segments?" + urlencode({"id": out["id"]}))], className="ok-box", id="save-ok")  # fmt: skip


def register(app: dash.Dash) -> None:
    app.callback(Output("rule-status", "children"), Input("rule-text", "value"))(check)
    app.callback(Output("save-out", "children"), Input("save-btn", "n_clicks"), State("rule-text", "value"),
                 State("save-id", "value"), State("save-name", "value"), State("save-mode", "value"),
                 prevent_initial_call=True)(save)  # fmt: skip
