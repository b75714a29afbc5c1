"""Segments: every segment with size and volatility; for one segment its size over time, typical day (kWh in
each hour of a weekday and of a weekend day), members (each opens the client view), differentiators, lookalike
expansion and CSV export; the R × F grid; overlap of two segments; suggested segments.

The selected segment is ``?id=family:id`` in the URL. Expansion, overlap and
suggestions run on demand (buttons and pickers), as they read the whole
population.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from console.client import Api, ConsoleError, Prometheus
from console.context import current_api
from console.ui import Filters, error_box, figure, link, num, section, table

SUGGEST_INFLUENCERS = ["region", "tariff", "features.mean_daily_kwh", "features.share_evening", "rfm.frequency"]


def client_link(cid: str) -> Any:
    return link(cid, "/client?" + urlencode({"id": cid}), className="member-link")


def segment_link(sid: str) -> Any:
    return link(sid, "/segments?" + urlencode({"id": sid}))


def _history(api: Api, sid: str) -> go.Figure:
    h = api.get(Api.seg_path(sid) + "/history", limit=720)
    points = [*h["samples"], h["now"]]
    fig = go.Figure(go.Scatter(x=[datetime.fromtimestamp(p["ts"], UTC) for p in points], y=[p["size"] for p in points],
                               mode="lines+markers", line={"shape": "hv"}))  # fmt: skip
    fig.update_layout(yaxis_title="members", xaxis_title="wall clock (UTC), one sample a minute")
    return fig


def _shape(api: Api, sid: str) -> Any:
    s = api.get(Api.seg_path(sid) + "/shape")
    if not s["hours"]:
        return html.P("no member has load-shape features yet", className="note")
    labels = [h["label"] for h in s["hours"]]
    fig = go.Figure([go.Scatter(name=f"weekday ({num(s['weekday_kwh'], 1)} kWh)", x=labels,
                                y=[h["weekday_kwh"] for h in s["hours"]], mode="lines+markers", line={"shape": "hvh"}),
                     go.Scatter(name=f"weekend day ({num(s['weekend_kwh'], 1)} kWh)", x=labels,
                                y=[h["weekend_kwh"] for h in s["hours"]], mode="lines+markers",
                                line={"shape": "hvh", "dash": "dot"})])  # fmt: skip
    fig.update_layout(yaxis_title="kWh in the hour (UTC)", xaxis={"type": "category", "tickmode": "array", "tickvals": labels[::3]})
    estimated = s["with_features"] - s["with_hourly_shape"]
    how = f"; {estimated} from their 6-hour period shares only" if estimated else ""
    return html.Div([
        html.P(f"{s['with_features']} of {s['members']} members with features{how}; mean "
               f"{num(s.get('mean_daily_kwh'), 1)} kWh per day over a week (members' hourly shapes × their "
               "weekday and weekend-day kWh)", className="note"),
        figure(fig, "segment-shape", 300),
    ])  # fmt: skip


def _differentiators(api: Api, sid: str) -> Any:
    d = api.get("/insights/differentiators", a=sid, top=6)
    rows = []
    for a in d["attributes"]:
        if a["measure"] == "standardized_mean_difference":
            contrast = f"{num(a['a'].get('mean'), 2)} vs {num(a['b'].get('mean'), 2)} (mean)"
        else:
            dist = (a.get("a") or {}).get("distribution") or {}
            top_a = max(dist.items(), key=lambda kv: kv[1], default=("", 0.0))
            contrast = f"{top_a[0]}: {100 * top_a[1]:.0f} % vs {100 * ((a.get('b') or {}).get('distribution') or {}).get(top_a[0], 0):.0f} %"
        rows.append((a["attribute"], a["measure"].replace("_", " "), num(a["score"], 2), contrast))
    return table(("attribute", "measure", "score", f"{d['a']} vs {d['b']}"), rows, id="segment-differentiators")


def _rfm_grid(api: Api) -> Any:
    g = api.get("/insights/rfm-grid")
    if not g["cells"]:
        return html.P("no RFM scores yet", className="note")
    z = [[0] * 5 for _ in range(5)]
    text = [[""] * 5 for _ in range(5)]
    for c in g["cells"]:
        if 1 <= c["r"] <= 5 and 1 <= c["f"] <= 5:
            z[c["r"] - 1][c["f"] - 1] = c["customers"]
            text[c["r"] - 1][c["f"] - 1] = f"{c['customers']}<br>{c['segment']}"
    fig = go.Figure(go.Heatmap(z=z, x=[f"F{i}" for i in range(1, 6)], y=[f"R{i}" for i in range(1, 6)], text=text,
                               texttemplate="%{text}", colorscale="Blues", showscale=False))  # fmt: skip
    fig.update_layout(xaxis_title="frequency score", yaxis_title="recency score")
    return figure(fig, "rfm-grid", 380)


def _detail(api: Api, sid: str) -> Any:
    seg = api.get(Api.seg_path(sid))
    members = api.get(Api.seg_path(sid) + "/members", limit=24, offset=0)
    definition = seg.get("definition") or {}
    about = seg.get("profile") or definition.get("expression") or seg.get("name")
    return section(
        f"{seg['name']} ({sid})",
        html.P([f"{seg['size']} members · {about} · ", html.A("export CSV", href=f"/export/{sid}.csv", id="export-link")]),
        html.Div([
            html.Div([html.H4("Size over time"), figure(_history(api, sid), "segment-history", 260)]),
            html.Div([html.H4("Typical day"), _shape(api, sid)]),
        ], className="row"),
        html.Div([
            html.Div([html.H4("Members"), html.Div([client_link(m) for m in members["items"]], id="segment-members",
                                                   style={"display": "flex", "flexWrap": "wrap", "gap": ".4em 1em"})]),
            html.Div([html.H4("What sets it apart from everyone else"), _differentiators(api, sid)]),
        ], className="row"),
        html.H4("Expand to similar customers"),
        html.Button("find lookalikes", id="expand-btn"), dcc.Store(id="expand-seg", data=sid),
        html.Div(id="expand-out"),
        id="segment-detail",
    )  # fmt: skip


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    listing = api.get("/segments")["segments"]
    ids = [s["id"] for s in listing]
    selected = query.get("id") if query.get("id") in ids else (ids[0] if ids else None)
    rows = [(segment_link(s["id"]), s["family"], s["name"], num(s["size"]), num((s.get("volatility") or {}).get("ratio"), 3))
            for s in listing]  # fmt: skip
    options = [{"label": f"{s['id']} - {s['name']}", "value": s["id"]} for s in listing]
    # a segment of another family overlaps in an interesting way; with one family only (a young engine has RFM
    # segments and no behaviour model yet), any other segment still gives an overlap to look at
    others = [i for i in ids if i != selected]
    second = next((i for i in others if i.split(":")[0] != (selected or "").split(":")[0]), others[0] if others else None)
    return [
        html.Div([
            section("Segments", table(("segment", "family", "name", "size", "volatility / day"), rows, id="segment-list"),
                    note="volatility: (entries + exits) / size on the latest day with moves"),
            section("R × F grid", _rfm_grid(api), note="customers per recency and frequency score, with their segment"),
        ], className="row"),
        _detail(api, selected) if selected else html.P("no segments yet"),
        html.Div([
            section("Overlap of two segments",
                    dcc.Dropdown(id="ov-a", options=options, value=selected, clearable=False),
                    dcc.Dropdown(id="ov-b", options=options, value=second, clearable=False),
                    html.Div(id="overlap-out")),
            section("Suggested segments", html.P("segments where the customer lifetime value is notably above or below "
                                                 "the population, from a shallow decision tree", className="note"),
                    html.Button("suggest segments", id="suggest-btn"), html.Div(id="suggest-out")),
        ], className="row"),
    ]  # fmt: skip


def overlap(a: str | None, b: str | None) -> Any:
    if not a or not b:
        return html.P("choose two segments", className="note")
    try:
        o = current_api().get("/insights/overlap", a=a, b=b)
    except ConsoleError as exc:
        return error_box(str(exc))
    fig = go.Figure(go.Bar(x=[f"only {a}", "both", f"only {b}"], y=[o["only_a"], o["shared"], o["only_b"]],
                           marker={"color": ["#1f5f99", "#7d5ba6", "#e07b39"]}))  # fmt: skip
    return html.Div([
        html.P(f"{o['shared']} shared: {100 * o['share_of_a']:.1f} % of {a}, {100 * o['share_of_b']:.1f} % of {b}; "
               f"Jaccard {o['jaccard']:.3f}", id="overlap-summary"),
        figure(fig, "overlap-chart", 240),
    ])  # fmt: skip


def expand(clicks: int | None, sid: str | None) -> Any:
    if not clicks or not sid:
        return dash.no_update
    try:
        e = current_api().post(Api.seg_path(sid) + "/expand", {"limit": 15})
    except ConsoleError as exc:
        return error_box(str(exc))
    bands = ", ".join(f"{k} {v}" for k, v in e.get("bands", {}).items())
    rows = [(client_link(r["customer_id"]), num(r["score"], 3), r["band"]) for r in e["results"]]
    return html.Div([html.P(f"{e['found']} lookalikes found ({bands}) among {e.get('candidates', '?')} candidates",
                            id="expand-summary"),
                     table(("customer", "similarity", "band"), rows, id="expand-results")])  # fmt: skip


def suggest(clicks: int | None) -> Any:
    if not clicks:
        return dash.no_update
    body = {"target": "clv", "influencers": SUGGEST_INFLUENCERS, "max_depth": 2, "min_leaf": 10}
    try:
        s = current_api().post("/insights/suggest", body)
    except ConsoleError as exc:
        return error_box(str(exc))
    rows = [(html.Code(x["rule"]), num(x["size"]), f"{x['lift']:.2f}", x["direction"],
             link("open in builder", "/builder?" + urlencode({"rule": x["rule"]})))
            for x in s["suggestions"]]  # fmt: skip
    return table(("rule", "size", "lift", "CLV", ""), rows, id="suggestions", empty="no suggestion")


def register(app: dash.Dash) -> None:
    app.callback(Output("overlap-out", "children"), Input("ov-a", "value"), Input("ov-b", "value"))(overlap)
    app.callback(Output("expand-out", "children"), Input("expand-btn", "n_clicks"), State("expand-seg", "data"),
                 prevent_initial_call=True)(expand)  # fmt: skip
    app.callback(Output("suggest-out", "children"), Input("suggest-btn", "n_clicks"), prevent_initial_call=True)(
        suggest
    )
