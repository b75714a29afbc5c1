"""Meter health: good / fair / poor shares, faulty meters with reasons, late meters with last seen, reading
delay, and the drill-down region → meters → one meter's alerts (``?region=`` then ``?meter=`` in the URL).

Last seen of a late meter: the health record's ``since`` is when it was
declared silent (last heard of plus the allowed gap).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import plotly.graph_objects as go
from dash import html

from console.client import Api, ConsoleError, Prometheus
from console.ui import HEALTH_COLOURS, Filters, card, cards, duration, figure, link, num, section, table

SHOWN = 25
DELAY_QUERY = (
    'sum(rate(meterseg_processing_latency_seconds_sum{source="event_time"}[5m]))'
    ' / sum(rate(meterseg_processing_latency_seconds_count{source="event_time"}[5m]))'
)


def when(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "–"


def meter_link(meter_id: str, region: str | None) -> Any:
    return link(meter_id, "/health?" + urlencode({"region": region or "", "meter": meter_id}))


def alerts_panel(api: Api, meter_id: str) -> Any:
    meter = api.get(f"/meters/{meter_id}")
    h = meter.get("health") or {}
    rows = [(a.get("ts", ""), a.get("kind"), a.get("action"), a.get("health"), ", ".join(a.get("reasons", [])),
             a.get("detail", "")) for a in meter.get("alerts", [])]  # fmt: skip
    return section(
        f"Meter {meter_id}: alerts",
        html.P(f"health {h.get('state', '?')} ({', '.join(h.get('reasons', [])) or 'no reasons'}) since "
               f"{when(h.get('since'))}", id="meter-health-state"),
        table(("time", "kind", "action", "health", "reasons", "detail"), rows, id="meter-alerts", empty="no alerts"),
        link("load curve of this meter", "/consumption?" + urlencode({"meter": meter_id})),
        id="alerts-section",
    )  # fmt: skip


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    region = query.get("region") or f.region
    fleet = api.get("/fleet/meters", region=region, state="fair,poor", limit=200)
    st = fleet["by_state"]
    total = max(fleet["meters"], 1)
    try:
        delay = prom.scalar(DELAY_QUERY)
    except ConsoleError:
        delay = None
    states = ("good", "fair", "poor")
    shares = go.Figure(go.Bar(x=list(states), y=[st[s] / total for s in states],
                              marker={"color": [HEALTH_COLOURS[s] for s in states]},
                              text=[f"{100 * st[s] / total:.0f} %" for s in states]))  # fmt: skip
    shares.update_layout(yaxis_tickformat=".0%", yaxis_title="share of meters")
    region_rows = [(link(r, "/health?" + urlencode({"region": r})), c["good"], c["fair"], c["poor"], c["late"],
                    c["faulty"]) for r, c in fleet["by_region"].items()]  # fmt: skip
    faulty_items = [m for m in fleet["items"] if any(r != "silent" for r in m["reasons"])][:SHOWN]
    faulty = [(meter_link(m["meter_id"], m["region"]), m["region"], m["state"], ", ".join(m["reasons"]),
               when(m["since"])) for m in faulty_items]  # fmt: skip
    late_page = api.get("/fleet/meters", region=region, reason="silent", limit=SHOWN)
    late = [(meter_link(m["meter_id"], m["region"]), m["region"], m["customer_id"], when(m["since"]))
            for m in late_page["items"]]  # fmt: skip
    where = region or "all regions"
    out: list[Any] = [
        cards(
            card("good", f"{100 * st['good'] / total:.0f} %", "health-good", f"{st['good']} meters"),
            card("fair", f"{100 * st['fair'] / total:.0f} %", "health-fair", f"{st['fair']} meters"),
            card("poor", f"{100 * st['poor'] / total:.0f} %", "health-poor", f"{st['poor']} meters"),
            card("late", num(st["late"]), "health-late", "silent beyond the allowed gap"),
            card("reading delay", duration(delay), "health-delay",
                 "interval end → processing, 5 min average (Prometheus)"),
        ),
        html.Div([
            section(f"Health shares ({where})", figure(shares, "health-shares", 280)),
            section("By region", table(("region", "good", "fair", "poor", "late", "faulty"), region_rows,
                                       id="health-regions"), note="click a region to drill down"),
        ], className="row"),
    ]  # fmt: skip
    if query.get("meter"):
        out.append(alerts_panel(api, query["meter"]))
    out += [
        section(f"Meters failing validation ({where})", table(("meter", "region", "state", "reasons", "since"), faulty,
                                                  id="faulty-meters", empty="no faulty meters"),
                note=f"failing validation rules (stuck register, spikes, negative values, fault heartbeats...); "
                f"{len(faulty)} listed"),
        section(f"Late meters ({where})", table(("meter", "region", "customer", "silent since"), late,
                                                id="late-meters", empty="no late meters"),
                note=f"{len(late)} of {late_page['total']} late meters listed"),
    ]  # fmt: skip
    return out
