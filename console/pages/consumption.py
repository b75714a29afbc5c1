"""Consumption: by region, top consumers, daily and monthly trends, and one meter's daily windows with completeness.

All in event time from the API: ``/fleet/daily`` (closed daily meter windows
per region), ``/meters/top`` and ``/meters/{id}`` (a meter's last 14 daily
windows, each with readings received against readings expected). A day
inside the meter's span without a window is shown as a gap.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import plotly.graph_objects as go
from dash import html

from console.client import Api, Prometheus
from console.ui import Filters, figure, link, num, section, table


def meter_curve(api: Api, meter_id: str) -> list[Any]:
    """A meter's daily windows: kWh bars, completeness line, and missing days marked as gaps."""
    meter = api.get(f"/meters/{meter_id}")
    windows = sorted((w for w in meter.get("windows", []) if w.get("window") == "1d"), key=lambda w: w["window_start"])
    if not windows:
        return [html.P(f"{meter_id}: no closed daily window yet", id="meter-curve-empty")]
    by_day = {w["window_start"][:10]: w for w in windows}
    first, last = (
        date.fromisoformat(windows[0]["window_start"][:10]),
        date.fromisoformat(windows[-1]["window_start"][:10]),
    )
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    gaps = [d for d in days if d not in by_day]
    fig = go.Figure()
    fig.add_bar(name="kWh imported", x=days, y=[by_day[d]["kwh_in"] if d in by_day else None for d in days])
    fig.add_scatter(name="completeness", x=days, y=[by_day[d].get("completeness") if d in by_day else 0 for d in days],
                    yaxis="y2", mode="lines+markers")  # fmt: skip
    if gaps:
        fig.add_scatter(name="gap (no window)", x=gaps, y=[0] * len(gaps), mode="markers",
                        marker={"symbol": "x", "size": 12, "color": "#b8403b"})  # fmt: skip
    fig.update_layout(yaxis_title="kWh", yaxis2={"overlaying": "y", "side": "right", "range": [0, 1.05],
                                                 "title": "readings / expected", "tickformat": ".0%"},
                      xaxis={"type": "category"})  # fmt: skip
    registry = meter.get("registry") or {}
    rows = [(w["window_start"][:10], num(w["kwh_in"], 3), num(w.get("kwh_out"), 3),
             f"{w.get('readings', '?')} / {w.get('expected', '?')}", num(100 * (w.get("completeness") or 0), 1) + " %")
            for w in windows]  # fmt: skip
    return [
        html.P([f"meter {meter_id} of customer ", link(str(registry.get("customer_id")),
                f"/client?{urlencode({'id': registry.get('customer_id', '')})}"),
                f" · region {registry.get('region', '?')} · {registry.get('interval_minutes', '?')}-minute readings",
                f" · gaps: {', '.join(gaps) if gaps else 'none'}"], id="meter-curve-head"),
        figure(fig, "meter-curve"),
        table(("day", "kWh in", "kWh out", "readings / expected", "completeness"), rows, id="meter-windows"),
    ]  # fmt: skip


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    daily = api.get("/fleet/daily", **{"from": f.start, "to": f.end, "region": f.region})
    top = api.get("/meters/top", **{"from": daily["from"], "to": daily["to"], "region": f.region, "limit": 15})
    totals: dict[str, float] = defaultdict(float)
    months: dict[tuple[str, str], float] = defaultdict(float)
    for d in daily["days"]:
        for r, v in d["by_region"].items():
            totals[r] += v["kwh"]
            months[(d["day"][:7], r)] += v["kwh"]
    regions = sorted(totals)
    by_region = go.Figure(go.Bar(x=regions, y=[totals[r] for r in regions]))
    by_region.update_layout(yaxis_title="kWh")
    days = [d["day"] for d in daily["days"]]
    trend = go.Figure([go.Scatter(name=r, x=days, y=[d["by_region"].get(r, {}).get("kwh", 0) for d in daily["days"]],
                                  mode="lines+markers") for r in regions])  # fmt: skip
    trend.update_layout(yaxis_title="kWh per day", xaxis={"type": "category"})
    month_keys = sorted({m for m, _ in months})
    monthly = go.Figure([go.Bar(name=r, x=month_keys, y=[months.get((m, r), 0) for m in month_keys]) for r in regions])
    monthly.update_layout(barmode="stack", yaxis_title="kWh per month", xaxis={"type": "category"})
    items = top["items"]
    meter_id = query.get("meter") or (items[0]["meter_id"] if items else None)
    top_rows = [(i + 1, link(t["meter_id"], f"/consumption?{urlencode({'meter': t['meter_id']})}"),
                 link(str(t["customer_id"]), f"/client?{urlencode({'id': t['customer_id'] or ''})}"), num(t["kwh"], 1))
                for i, t in enumerate(items)]  # fmt: skip
    return [
        html.Div([
            section("Consumption by region", figure(by_region, "consumption-by-region"),
                    note=f"kWh imported {daily['from']} to {daily['to']}"),
            section("Top consumers", table(("#", "meter", "customer", "kWh"), top_rows, id="top-consumers"),
                    note="click a meter for its load curve"),
        ], className="row"),
        html.Div([
            section("Daily trend", figure(trend, "consumption-daily")),
            section("Monthly trend", figure(monthly, "consumption-monthly")),
        ], className="row"),
        section("Load curve of a meter: daily windows and completeness",
                *(meter_curve(api, meter_id) if meter_id else [html.P("no meter with data yet")]), id="meter-section"),
    ]  # fmt: skip
