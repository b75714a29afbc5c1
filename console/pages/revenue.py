"""Revenue and operations, from Prometheus: revenue by region and over time, purchases by channel, bills paid
vs unpaid, maintenance requests and customer satisfaction.

These are the workers' counters, so they run on the wall clock since the
workers started (not the event days of the date filter); the region filter
applies to the metrics with a region label (regional revenue, maintenance).
"""

from __future__ import annotations

import time
from typing import Any

import plotly.graph_objects as go
from dash import html

from console.client import Api, Prometheus
from console.pages.overview import region_matcher
from console.ui import Filters, card, cards, duration, figure, num, section

LOOKBACK_S = 6 * 3600


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


def render(api: Api, prom: Prometheus, f: Filters, query: dict[str, str]) -> Any:
    m = region_matcher(f.region)
    by_region = prom.vector(f"sum by (region) (meterseg_region_revenue_total{m})")
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
    end = time.time()
    start = end - LOOKBACK_S
    step = max(LOOKBACK_S / 240, 15.0)
    over_time = prom.series("sum(meterseg_purchase_revenue_total)", start, end, step)
    over_time += prom.series(f"sum by (region) (meterseg_region_revenue_total{m})", start, end, step)
    trend = go.Figure([go.Scatter(name=labels.get("region", "purchases (all channels)"),
                                  x=[time.strftime("%H:%M:%S", time.gmtime(t)) for t in ts], y=vs, mode="lines")
                       for labels, ts, vs in over_time])  # fmt: skip
    trend.update_layout(yaxis_title="cumulative amount", xaxis_title="wall clock (UTC)")
    issued, paid = amounts.get("issued", 0.0), amounts.get("paid", 0.0)
    bills = go.Figure(go.Bar(x=["issued", "paid", "outstanding"], y=[issued, paid, outstanding or 0.0],
                             marker={"color": ["#1f5f99", "#3a9e5f", "#b8403b"]}))  # fmt: skip
    _empty_note(bills, [issued, paid, outstanding or 0.0])
    feedback = _bar(scores, "score", "feedback messages")
    return [
        cards(
            card("purchases", num(sum(v for _, v in channels), 2), "rev-purchases", "all channels, all regions"),
            card("regional revenue", num(sum(v for _, v in by_region), 2), "rev-regional", f.region or "all regions"),
            card("bills outstanding", num(outstanding, 2), "rev-outstanding", "issued and not paid"),
            card("maintenance opened", num(sum(v for _, v in opened)), "ops-opened", f"resolved {num(resolved)}"),
            card("mean resolution", duration(resolution), "ops-resolution", "request to resolution"),
            card("satisfaction", num(satisfaction, 2) if satisfaction else "–", "ops-satisfaction",
                 f"average of {num(n_feedback)} scores (1-5)"),
        ),
        html.Div([
            section("Revenue by region", figure(_bar(by_region, "region", "amount"), "rev-by-region", 280),
                    note="tariff revenue and purchases booked into closed regional windows"),
            section("Purchases by channel", figure(_bar(channels, "channel", "amount"), "rev-by-channel", 280)),
        ], className="row"),
        section("Revenue over time", figure(trend, "rev-trend", 300),
                note="cumulative since the workers started, last 6 hours of Prometheus samples"),
        html.Div([
            section("Bills: paid vs unpaid", figure(bills, "ops-bills", 280)),
            section("Maintenance requests opened by region", figure(_bar(opened, "region", "requests"), "ops-maintenance", 280)),
            section("Satisfaction scores", figure(feedback, "ops-feedback", 280)),
        ], className="row"),
    ]  # fmt: skip
