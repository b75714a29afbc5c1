"""Client view: one customer's consumption, RFM, CLV and churn risk, current segments and their history with
reasons (``/client?id=C...``; a search box finds customers by id prefix).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from console.client import Api, ConsoleError, Prometheus
from console.context import current_api
from console.pages.consumption import meter_curve
from console.ui import Filters, card, cards, error_box, figure, link, num, section, table

RFM_ROWS = (("recency (days since last purchase)", "days_since_last", 1), ("frequency (repeat purchase days)", "frequency", 0),
            ("monetary (mean purchase)", "monetary_mean", 2), ("purchases", "n_purchases", 0),
            ("total spend", "total_spend", 2), ("age T (days)", "T_days", 0))  # fmt: skip
SHARES = ("share_night", "share_morning", "share_daytime", "share_evening")


def search_box(value: str = "") -> html.Div:
    return html.Div([
        dcc.Input(id="client-search", type="text", value=value, placeholder="customer id or prefix", debounce=True),
        html.Div(id="client-search-out"),
    ])  # fmt: skip


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    cid = query.get("id")
    if not cid:
        return [
            section("Find a customer", search_box(), note="type an id prefix, e.g. C000; or open one from a segment")
        ]
    c = api.get(f"/customers/{cid}")
    rfm, value, feats = c.get("rfm") or {}, c.get("value") or {}, c.get("features") or {}
    score = f"R{rfm.get('r_score', '?')} F{rfm.get('f_score', '?')} M{rfm.get('m_score', '?')}"
    head = cards(
        card("customer", cid, "client-id", f"{c.get('region')} · {c.get('tariff')}" + (" · solar" if c.get("has_export") else "")),
        card("RFM segment", rfm.get("segment_name") or "–", "client-rfm", score),
        card("CLV (365 days)", num(value.get("clv"), 2), "client-clv", "BG/NBD + Gamma-Gamma"),
        card("churn risk", f"{100 * value['churn_risk']:.1f} %" if value.get("churn_risk") is not None else "–",
             "client-churn", f"P(alive) {num(value.get('p_alive'), 3)}"),
        card("consumption", f"{num(feats.get('mean_daily_kwh'), 1)} kWh/day", "client-kwh", f"features of {feats.get('day', '–')}"),
    )  # fmt: skip
    rfm_rows = [(label, num(rfm.get(key), digits)) for label, key, digits in RFM_ROWS]
    shape = go.Figure(go.Bar(x=["night 00-06", "morning 06-12", "daytime 12-18", "evening 18-24"],
                             y=[(feats.get(s) or 0) * (feats.get("mean_daily_kwh") or 0) for s in SHARES]))  # fmt: skip
    shape.update_layout(yaxis_title="kWh per day in the quarter")
    segs = [(link(s["id"], "/segments?" + urlencode({"id": s["id"]})), s.get("name"), s.get("reason"), s.get("since"))
            for s in c.get("segments", [])]  # fmt: skip
    hist = [(h.get("at"), f"{h.get('family')}:{h.get('segment_id')}", h.get("segment_name"), h.get("change"),
             h.get("reason"), h.get("from_segment") or "", h.get("to_segment") or "")
            for h in sorted(c.get("history", []), key=lambda h: h.get("at") or "", reverse=True)]  # fmt: skip
    meters = c.get("meters", [])
    meter_rows = [(link(m["meter_id"], "/health?" + urlencode({"meter": m["meter_id"], "region": m.get("region", "")})),
                   (m.get("health") or {}).get("state", "–"), ", ".join((m.get("health") or {}).get("reasons", [])))
                  for m in meters]  # fmt: skip
    return [
        section("Find a customer", search_box(cid)),
        head,
        html.Div([
            section("RFM", table(("measure", "value"), rfm_rows, id="client-rfm-table")),
            section("Typical day", figure(shape, "client-shape", 260), note="from the load-shape features"),
            section("Meters", table(("meter", "health", "reasons"), meter_rows, id="client-meters")),
        ], className="row"),
        section("Segments now", table(("segment", "name", "reason", "since"), segs, id="client-segments")),
        section("Segment history (latest first)", table(("at", "segment", "name", "change", "reason", "from", "to"), hist,
                                                        id="client-history")),
        section("Consumption of the first meter", *(meter_curve(api, meters[0]["meter_id"]) if meters else [])),
    ]  # fmt: skip


def search(value: str | None) -> Any:
    if not value:
        return dash.no_update
    try:
        found = current_api().get("/customers", query=value, limit=20)
    except ConsoleError as exc:
        return error_box(str(exc))
    rows = [(link(i["customer_id"], "/client?" + urlencode({"id": i["customer_id"]})), i.get("region"),
             i.get("rfm_segment"), i.get("behaviour_segment")) for i in found["items"]]  # fmt: skip
    return table(("customer", "region", "rfm", "behaviour"), rows, id="client-search-results", empty="no customer")


def register(app: dash.Dash) -> None:
    app.callback(Output("client-search-out", "children"), Input("client-search", "value"), prevent_initial_call=True)(
        search
    )
