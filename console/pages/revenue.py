"""Revenue and operations: revenue by region and over time for the date range, purchases by channel, bills paid
vs unpaid, maintenance requests and customer satisfaction.

Revenue by region and over time follows the filters: it is the revenue booked
per event day and region (``GET /fleet/revenue``: tariff revenue and purchases
of the closed regional windows, a corrected window counted once with its
revised amount). The other figures are the workers' Prometheus counters, which
have no event day: they run on the wall clock since the workers started, and
the page says so next to each of them; the region filter applies to those with
a region label (maintenance).
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import html

from console.client import Api, Prometheus
from console.pages.overview import region_matcher
from console.ui import Filters, card, cards, duration, figure, num, section


def _bar(rows: list[tuple[dict[str, str], float]], label: str, title: str) -> go.Figure:
    rows = sorted(rows, key=lambda r: r[0].get(label, ""))
    fig = go.Figure(go.Bar(x=[r[0].get(label, "") for r in rows], y=[r[1] for r in rows]))
    fig.update_layout(yaxis_title=title)
    return _empty_note(fig, [r[1] for r in rows])


def _empty_note(fig: go.Figure, values: list[float]) -> go.Figure:
    """Say so on the chart when every value is zero (nothing counted yet), rather than show bare axes."""
    if not any(values):
        fig.add_annotation(text="nothing counted yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                           font={"size": 14, "color": "#5a6872"})  # fmt: skip
    return fig


WALL_CLOCK = "since the workers started (wall clock, Prometheus): not filtered by the days"


def _revenue_by_day(book: dict[str, Any]) -> go.Figure:
    days = [d["day"] for d in book["days"]]
    regions = sorted({r for d in book["days"] for r in d["by_region"]})
    fig = go.Figure([go.Bar(name=r, x=days, y=[d["by_region"].get(r, 0.0) for d in book["days"]]) for r in regions])
    fig.update_layout(barmode="stack", yaxis_title="revenue per day", xaxis={"type": "category"})
    return _empty_note(fig, [d["revenue"] for d in book["days"]])


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    book = api.get("/fleet/revenue", **{"from": f.start, "to": f.end, "region": f.region})
    by_region = [({"region": r}, v) for r, v in book["by_region"].items()]
    m = region_matcher(f.region)
    channels = prom.vector("sum by (channel) (meterseg_purchase_revenue_total)")
    amounts = dict((r[0].get("status", ""), r[1]) for r in prom.vector("sum by (status) (meterseg_bills_amount_total)"))
    outstanding = prom.scalar("max(meterseg_bills_outstanding_amount)")
    opened = prom.vector(f"sum by (region) (meterseg_maintenance_requests_opened_total{m})")
    resolved = prom.scalar(f"sum(meterseg_maintenance_requests_resolved_total{m})")
    resolution = prom.scalar(
        "sum(meterseg_maintenance_resolution_seconds_sum) / sum(meterseg_maintenance_resolution_seconds_count)"
    )
    scores = prom.vector("sum by (score) (meterseg_feedback_total)")
    n_feedback = sum(v for _, v in scores)
    satisfaction = sum(int(s.get("score", 0)) * v for s, v in scores) / n_feedback if n_feedback else None
    issued, paid = amounts.get("issued", 0.0), amounts.get("paid", 0.0)
    bills = go.Figure(go.Bar(x=["issued", "paid", "outstanding"], y=[issued, paid, outstanding or 0.0],
                             marker={"color": ["#1f5f99", "#3a9e5f", "#b8403b"]}))  # fmt: skip
    _empty_note(bills, [issued, paid, outstanding or 0.0])
    feedback = _bar(scores, "score", "feedback messages")
    where = f.region or "all regions"
    days = f"{book['from']} to {book['to']}" if book["from"] else "no revenue booked yet"
    booked_note = f"tariff revenue and purchases booked into closed regional windows, {days} (event days)"
    if not book["revenue"]:
        booked_note += ("; none in these days (tariff revenue needs prices: "
                        "METERSEG_INGEST__WINDOWS__PRICE_PER_KWH, see the README)")  # fmt: skip
    return [
        cards(
            card("revenue", num(book["revenue"], 2), "rev-regional", f"{where}, {days} (event days)"),
            card("purchases", num(sum(v for _, v in channels), 2), "rev-purchases", f"all channels, {WALL_CLOCK}"),
            card("bills outstanding", num(outstanding, 2), "rev-outstanding", "issued and not paid, now"),
            card("maintenance opened", num(sum(v for _, v in opened)), "ops-opened",
                 f"resolved {num(resolved)}; {WALL_CLOCK}"),
            card("mean resolution", duration(resolution), "ops-resolution", f"request to resolution, {WALL_CLOCK}"),
            card("satisfaction", num(satisfaction, 2) if satisfaction else "–", "ops-satisfaction",
                 f"average of {num(n_feedback)} scores (1-5), {WALL_CLOCK}"),
        ),
        html.Div([
            section("Revenue by region", figure(_bar(by_region, "region", "amount"), "rev-by-region", 280),
                    note=booked_note),
            section("Purchases by channel", figure(_bar(channels, "channel", "amount"), "rev-by-channel", 280),
                    note=WALL_CLOCK),
        ], className="row"),
        section("Revenue over time", figure(_revenue_by_day(book), "rev-trend", 300),
                note="revenue per event day and region over the chosen days; a corrected window counts once, "
                     "with its revised amount"),
        html.Div([
            section("Bills: paid vs unpaid", figure(bills, "ops-bills", 280), note=WALL_CLOCK),
            section("Maintenance requests opened by region", figure(_bar(opened, "region", "requests"), "ops-maintenance", 280),
                    note=WALL_CLOCK),
            section("Satisfaction scores", figure(feedback, "ops-feedback", 280), note=WALL_CLOCK),
        ], className="row"),
    ]  # fmt: skip
