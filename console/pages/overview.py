"""Overview: customers, consumption, revenue and meters (active, inactive, faulty) for the date range and region.

Consumption and revenue are event time: the closed daily meter windows of the
chosen days (``/fleet/daily``) and the revenue booked per event day and region
from the closed regional windows (``/fleet/revenue``); meters and customers are
the current state (``/fleet/meters``, ``/customers``).
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import html

from console.client import Api, Prometheus
from console.ui import HEALTH_COLOURS, Filters, card, cards, figure, num, section


def region_matcher(region: str | None) -> str:
    return f'{{region="{region}"}}' if region else ""


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    daily = api.get("/fleet/daily", **{"from": f.start, "to": f.end, "region": f.region})
    fleet = api.get("/fleet/meters", region=f.region, limit=1)
    customers = api.get("/customers", region=f.region, limit=1)
    revenue = api.get("/fleet/revenue", **{"from": f.start or daily["from"], "to": f.end or daily["to"],
                                          "region": f.region})  # fmt: skip
    st = fleet["by_state"]
    late = st["late"]
    active = fleet["meters"] - late
    kwh = sum(d["kwh"] for d in daily["days"])
    where = f.region or "all regions"
    head = cards(
        card("customers", num(customers["total"]), "kpi-customers", where),
        card("consumption (kWh)", num(kwh, 1), "kpi-kwh", f"{daily['from']} to {daily['to']}"),
        card("revenue", num(revenue["revenue"], 2), "kpi-revenue",
             f"tariff and purchases booked into regional windows, {revenue['from']} to {revenue['to']}"),
        card("meters active", num(active), "kpi-active", "reporting, not silent"),
        card("meters inactive", num(late), "kpi-inactive", "silent beyond the allowed gap"),
        card("meters faulty", num(st["faulty"]), "kpi-faulty", "poor for a validation failure"),
    )
    days = [d["day"] for d in daily["days"]]
    regions = sorted({r for d in daily["days"] for r in d["by_region"]})
    by_day = go.Figure([go.Bar(name=r, x=days, y=[d["by_region"].get(r, {}).get("kwh", 0) for d in daily["days"]])
                        for r in regions])  # fmt: skip
    by_day.update_layout(barmode="stack", yaxis_title="kWh per day", xaxis={"type": "category"})
    states = [s for s in ("good", "fair", "poor") if st[s]]
    health_fig = go.Figure(go.Pie(labels=states, values=[st[s] for s in states], hole=0.45,
                                  marker={"colors": [HEALTH_COLOURS[s] for s in states]}))  # fmt: skip
    return [
        head,
        html.Div([
            section("Consumption per day and region", figure(by_day, "overview-daily"),
                    note="kWh imported, from the closed daily meter windows (event time)"),
            section("Meters by health", figure(health_fig, "overview-health"),
                    note=f"{fleet['meters']} meters in {where}; late = silent, faulty = poor for another reason"),
        ], className="row"),
    ]  # fmt: skip
