"""Builds meterseg's Grafana dashboards (JSON model, Grafana 11) and their description.

The dashboards are code: this module is the source, ``grafana/dashboards/*.json``
and ``docs/dashboards.md`` are its committed output (a test keeps them equal).

    python grafana/build_dashboards.py           # rewrite the JSON and the docs
    python grafana/build_dashboards.py --check   # exit 1 if the committed files differ

Every query uses only metrics of ``stream/metrics.py`` (plus Prometheus' own
``up``). Metrics with a ``region`` label are filtered by the ``$region``
variable; rates use ``$__rate_interval`` and totals for the selected time
range ``increase(...[$__range])`` so the time picker filters every panel.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JSON = dict[str, Any]

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
DOCS_PATH = REPO / "docs" / "dashboards.md"
RULES_PATH = REPO / "prometheus" / "rules" / "meterseg.yml"

DATASOURCE: JSON = {"type": "prometheus", "uid": "prometheus"}
SCHEMA_VERSION = 39
GRID_WIDTH = 24

# Filters reused by the queries.
R = 'region=~"$region"'
F = 'family=~"$family"'
API = "${api_url}"
RANGE_FROM_TO = "from=${__from:date:iso}&to=${__to:date:iso}"
IMPORTED = f'meterseg_region_energy_kwh_total{{direction="import", {R}}}'
EXPORTED = f'meterseg_region_energy_kwh_total{{direction="export", {R}}}'


# -- model ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False  # evaluate once at the end of the range (stat, bar gauge, table)
    table: bool = False  # Prometheus "table" format: one row per series, labels as columns
    interval: str = ""  # minimum step, e.g. "1d" for daily bars


@dataclass(frozen=True)
class Link:
    """A data link (tables, panels) to a drill-down view of the engine's API."""

    title: str
    url: str


@dataclass
class Panel:
    """A panel; ``help`` is shown in Grafana and in docs/dashboards.md (what an operator does with it)."""

    kind: str  # timeseries | stat | table | bargauge | piechart | text
    title: str
    help: str
    queries: list[Query] = field(default_factory=list)
    unit: str = "short"
    width: int = 8
    height: int = 8
    decimals: int | None = None
    thresholds: list[tuple[float | None, str]] | None = None
    links: list[Link] = field(default_factory=list)
    content: str = ""  # markdown of text panels
    bars: bool = False  # timeseries drawn as bars (daily/monthly totals)
    stacked: bool = False
    negative: str = ""  # regex of series names drawn below the axis (exports, exits)
    no_value: str | None = None  # shown instead of "No data" (a count that is simply zero)
    min_value: float | None = None
    max_value: float | None = None
    # table: field name -> display name; never rename a column a data link reads (${__data.fields.<name>})
    columns: dict[str, str] = field(default_factory=dict)
    hidden_columns: tuple[str, ...] = ("Time", "__name__", "job")


@dataclass
class Row:
    title: str
    panels: list[Panel]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str = ""  # label_values(...) for query variables
    textbox_default: str = ""  # a free-text variable (API address, ids) when set


@dataclass
class Dashboard:
    uid: str
    title: str
    intro: str
    rows: list[Row]
    variables: list[Variable]
    time_from: str = "now-6h"


REGION = Variable("region", "Region", query="label_values(meterseg_meters_registered, region)")
FAMILY = Variable("family", "Segment family", query="label_values(meterseg_segment_members, family)")
API_URL = Variable("api_url", "Engine API", textbox_default="http://localhost:6066")
METER = Variable("meter_id", "Meter id", textbox_default="")
CUSTOMER = Variable("customer_id", "Customer id", textbox_default="")


# -- panels of each dashboard ------------------------------------------------------------------------
def stat(title: str, help: str, *queries: Query, **kw: Any) -> Panel:
    kw.setdefault("width", 4)
    kw.setdefault("height", 5)
    return Panel("stat", title, help, list(queries), **kw)


def series(title: str, help: str, *queries: Query, **kw: Any) -> Panel:
    return Panel("timeseries", title, help, list(queries), **kw)


def bars(title: str, help: str, *queries: Query, **kw: Any) -> Panel:
    kw.setdefault("width", 8)
    return Panel("bargauge", title, help, list(queries), **kw)


def pie(title: str, help: str, *queries: Query, **kw: Any) -> Panel:
    return Panel("piechart", title, help, list(queries), **kw)


def table(title: str, help: str, *queries: Query, **kw: Any) -> Panel:
    kw.setdefault("width", 12)
    return Panel("table", title, help, list(queries), **kw)


def text(title: str, help: str, content: str, **kw: Any) -> Panel:
    return Panel("text", title, help, content=content, **kw)


def range_total(expr: str) -> str:
    return f"increase({expr}[$__range])"


def fleet() -> Dashboard:
    meters_total = "sum(meterseg_meters)"
    late = "sum(meterseg_meters_late)"
    latency_event = (
        'sum(rate(meterseg_processing_latency_seconds_sum{source="event_time"}[{w}]))'
        ' / sum(rate(meterseg_processing_latency_seconds_count{source="event_time"}[{w}]))'
    )
    return Dashboard(
        uid="meterseg-fleet",
        title="meterseg / Fleet overview",
        intro=(
            "The control-room view: how many meters and customers, how many report, are late or faulty, "
            "what the fleet consumed and paid over the selected range, and whether ingestion keeps up."
        ),
        variables=[REGION, API_URL, METER, CUSTOMER],
        rows=[
            Row("Fleet", [
                stat("Meters registered",
                     "Meters known from the registry topic in the selected regions. Every worker reads the whole "
                     "registry, so the per-region maximum over workers is summed. A drop means meters were "
                     "decommissioned or the registry topic was truncated.",
                     Query(f"sum(max by (region) (meterseg_meters_registered{{{R}}}))", instant=True)),
                stat("Customers",
                     "Customers with state in the engine (new + returning). Should follow the registry; a gap means "
                     "purchases or registrations are not reaching the engine.",
                     Query("sum(meterseg_customers)", instant=True)),
                stat("Meters reporting",
                     "Meters owned by the workers minus those silent beyond the allowed gap (all regions).",
                     Query(f"{meters_total} - {late}", instant=True)),
                stat("Late meters",
                     "Meters with no reading or heartbeat for more than the allowed number of intervals (all "
                     "regions). A jump usually means a head-end or data concentrator stopped uploading: check "
                     "the late-meter alert and the meters' regions in the API.",
                     Query(late, instant=True), no_value="0"),
                stat("Faulty share",
                     "Share of meters in health state `poor` (readings or heartbeats failing validation: stuck "
                     "register, negative consumption, fault heartbeats). Above 5 % for 30 minutes MeterSegFaultyShareHigh "
                     "fires; click the value to list the meters (`/meters/faulty` of the API).",
                     Query(f'sum(meterseg_meters{{state="poor"}}) / clamp_min({meters_total}, 1)', instant=True),
                     unit="percentunit", decimals=1,
                     thresholds=[(None, "green"), (0.02, "orange"), (0.05, "red")],
                     links=[Link("Faulty meters (API)", f"{API}/meters/faulty")]),
                stat("Avg interval end → ingestion",
                     "Average delay over the selected range from the end of a reading's interval to its "
                     "processing. Minutes are normal (head-ends upload in blocks); hours mean a concentrator "
                     "is holding data back or the workers lag.",
                     Query(latency_event.replace("{w}", "$__range"), instant=True), unit="s", decimals=1,
                     thresholds=[(None, "green"), (900, "orange"), (3600, "red")]),
            ]),
            Row("Health and consumption", [
                pie("Meters by health",
                    "Meters per health state good / fair / poor (all regions; the health gauges have no region "
                    "label). Fair = warnings such as spikes or voltage; poor = faulty.",
                    Query("sum by (state) (meterseg_meters)", legend="{{state}}", instant=True),
                    width=6),
                series("Health over time",
                       "Meters per health state over the range. A growing `poor` band after a firmware rollout "
                       "or a storm is the signal to dispatch technicians.",
                       Query("sum by (state) (meterseg_meters)", legend="{{state}}"),
                       stacked=True, width=6),
                stat("Energy imported (range)",
                     "kWh imported in closed regional windows in the selected regions and time range.",
                     Query(f"sum({range_total(IMPORTED)})", instant=True),
                     unit="kwatth", decimals=0, width=4, height=8),
                stat("Revenue (range)",
                     "Tariff revenue of the consumption in the selected regions (`tariff`) and purchases "
                     "received over all channels (`purchases`, no region label) in the range. They are shown "
                     "side by side, not added: prepaid purchases pay for the same energy.",
                     Query(f"sum({range_total(f'meterseg_region_revenue_total{{{R}}}')})", legend="tariff",
                           instant=True),
                     Query(f"sum({range_total('meterseg_purchase_revenue_total')})", legend="purchases",
                           instant=True),
                     decimals=0, width=8, height=8),
            ]),
            Row("Ingestion", [
                series("Ingest rate",
                       "Kafka messages consumed per second per source topic, and readings accepted into windows. "
                       "Zero for ten minutes fires the no-events alert.",
                       Query("sum by (topic) (rate(meterseg_events_consumed_total[$__rate_interval]))",
                             legend="{{topic}}"),
                       Query("sum(rate(meterseg_readings_processed_total[$__rate_interval]))",
                             legend="readings accepted"),
                       unit="cps"),
                series("Interval end → ingestion latency",
                       "Average delay from interval end to processing over time; compare with the ingest rate "
                       "and lag to tell late uploads (lag low) from a slow engine (lag high).",
                       Query(latency_event.replace("{w}", "$__rate_interval"), legend="average"),
                       unit="s"),
                series("Consumer lag",
                       "Messages behind the high watermark per topic. A lag that keeps growing means the "
                       "workers cannot keep up: add a worker (partitions rebalance) or look at the Engine "
                       "dashboard's batch times.",
                       Query("sum by (topic) (meterseg_consumer_lag_messages)", legend="{{topic}}")),
                series("Dead letters by reason",
                       "Messages sent to the dead-letter topic per second, per reason (schema, unknown meter, "
                       "plausibility...). A new reason or a step up usually follows a head-end or firmware "
                       "change; inspect `meterseg.deadletter` records (headers carry the reason).",
                       Query("sum by (reason) (rate(meterseg_deadletter_total[$__rate_interval]))",
                             legend="{{reason}}"),
                       unit="cps"),
                table("Meter alerts raised in range",
                      "Meter alerts raised per kind over the range (stuck register, spike, late...). Follow the "
                      "row link to the faulty-meters view of the API.",
                      Query('sum by (kind) (increase(meterseg_alerts_total{action="raised"}[$__range]))',
                            instant=True, table=True),
                      columns={"kind": "Alert kind", "Value": "Raised"},
                      links=[Link("Faulty meters (API)", f"{API}/meters/faulty")], width=8),
                text("Drill down",
                     "Links into the engine's API (served by a worker's web port, 6066 by default; set the "
                     "`Engine API` variable if it runs elsewhere). Type a meter or customer id in the variables "
                     "above. The API asks for the bearer token of the settings.",
                     "\n".join([
                         "Per-meter and per-customer data is never a Prometheus label; it lives in the engine.",
                         "",
                         f"- Meter `${{meter_id}}`: [{API}/meters/${{meter_id}}]({API}/meters/${{meter_id}})",
                         f"- Customer `${{customer_id}}`: [{API}/customers/${{customer_id}}]"
                         f"({API}/customers/${{customer_id}})",
                         f"- Faulty meters: [{API}/meters/faulty]({API}/meters/faulty)",
                         f"- Segments: [{API}/segments]({API}/segments)",
                     ]),
                     width=16, height=6),
            ]),
        ],
    )


def consumption() -> Dashboard:
    energy = "meterseg_region_energy_kwh_total"
    revenue = "meterseg_region_revenue_total"
    return Dashboard(
        uid="meterseg-consumption",
        title="meterseg / Consumption and revenue",
        intro=(
            "Energy and money per region: totals for the range, trends (hourly, daily, monthly), imports "
            "vs exports (solar), revenue, and the way to the top consumers."
        ),
        time_from="now-7d",
        variables=[REGION, API_URL],
        rows=[
            Row("Totals for the range", [
                bars("Energy imported by region",
                     "kWh imported per region over the selected range. A region far below its usual share is missing data "
                     "(late meters, head-end) before it is a change in demand.",
                     Query(f"sum by (region) ({range_total(IMPORTED)})",
                           legend="{{region}}", instant=True),
                     unit="kwatth", decimals=0),
                bars("Energy exported by region",
                     "kWh exported (net-metered solar) per region over the selected range: where solar capacity is, and "
                     "where export tariffs weigh on revenue.",
                     Query(f"sum by (region) ({range_total(EXPORTED)})",
                           legend="{{region}}", instant=True),
                     unit="kwatth", decimals=0),
                bars("Revenue by region",
                     "Tariff revenue per region over the selected range, from closed regional windows priced by the tariff.",
                     Query(f"sum by (region) ({range_total(f'{revenue}{{{R}}}')})", legend="{{region}}",
                           instant=True),
                     decimals=0),
            ]),
            Row("Trends", [
                series("Imports vs exports",
                       "Energy per hour (kWh/h, i.e. average kW) imported and exported in the selected regions; "
                       "exports are drawn below the axis. Midday export peaks are solar.",
                       Query(f"sum by (direction) (rate({energy}{{{R}}}[$__rate_interval])) * 3600",
                             legend="{{direction}}"),
                       unit="kwatth", negative="export", width=12),
                series("Imports by region",
                       "Energy imported per hour per region. A region falling to zero while others continue "
                       "points at its head-end (see late meters), not at customers.",
                       Query(f'sum by (region) (rate({energy}{{direction="import", {R}}}[$__rate_interval])) * 3600',
                             legend="{{region}}"),
                       unit="kwatth", width=12),
                series("Daily energy",
                       "kWh per day (increase over one day at a one-day step), imports and exports.",
                       Query(f"sum by (direction) (increase({energy}{{{R}}}[1d]))", legend="{{direction}}",
                             interval="1d"),
                       unit="kwatth", bars=True, negative="export", width=12),
                series("Monthly energy",
                       "kWh per 30 days (increase over 30 days at a 30-day step); choose a range of several "
                       "months to compare months.",
                       Query(f"sum by (direction) (increase({energy}{{{R}}}[30d]))", legend="{{direction}}",
                             interval="30d"),
                       unit="kwatth", bars=True, negative="export", width=12),
            ]),
            Row("Revenue", [
                series("Revenue trend by region",
                       "Tariff revenue per hour per region; follows consumption, so a dip that consumption does not show "
                       "points at tariff data.",
                       Query(f"sum by (region) (rate({revenue}{{{R}}}[$__rate_interval])) * 3600",
                             legend="{{region}}"),
                       width=8),
                series("Daily revenue by region",
                       "Tariff revenue per day per region, stacked: the day-by-day total the finance team reconciles.",
                       Query(f"sum by (region) (increase({revenue}{{{R}}}[1d]))", legend="{{region}}",
                             interval="1d"),
                       bars=True, stacked=True, width=8),
                series("Daily purchases by channel",
                       "Purchased amount per day per channel (no region label: all regions). A channel dropping to zero is an "
                       "outage of that payment channel.",
                       Query("sum by (channel) (increase(meterseg_purchase_revenue_total[1d]))",
                             legend="{{channel}}", interval="1d"),
                       bars=True, stacked=True, width=8),
            ]),
            Row("Top consumers", [
                table("Regions: totals and top consumers",
                      "One row per region with imports, exports and revenue over the range. The row link opens "
                      "the engine's top-consumers view for that region and range (`GET /meters/top`); a "
                      "per-meter metric would create one series per meter, so the list comes from the API.",
                      Query(f"sum by (region) ({range_total(IMPORTED)})",
                            instant=True, table=True),
                      Query(f"sum by (region) ({range_total(EXPORTED)})",
                            instant=True, table=True),
                      Query(f"sum by (region) ({range_total(f'{revenue}{{{R}}}')})", instant=True, table=True),
                      columns={"Value #A": "Imported kWh", "Value #B": "Exported kWh",
                               "Value #C": "Revenue"},
                      links=[Link("Top consumers in ${__data.fields.region}",
                                  f"{API}/meters/top?region=${{__data.fields.region}}&{RANGE_FROM_TO}")],
                      decimals=0, width=14),
                text("Top consumers (API)",
                     "The fleet-wide list of top consumers for the selected range, from the engine's API. "
                     "Grafana has no JSON datasource provisioned, so the list opens in the browser.",
                     "\n".join([
                         "Top consumers come from the engine, not from Prometheus.",
                         "",
                         f"- All regions, selected range: [{API}/meters/top?{RANGE_FROM_TO}]"
                         f"({API}/meters/top?{RANGE_FROM_TO})",
                         "- One region: use the row links of the table.",
                         f"- One meter: `{API}/meters/<meter id>`",
                     ]),
                     width=10, height=8),
            ]),
        ],
    )


def _feedback(score: int, window: str) -> str:
    return f'(sum(increase(meterseg_feedback_total{{score="{score}"}}[{window}])) or vector(0))'


def satisfaction(window: str) -> str:
    """Weighted mean score: PromQL cannot multiply by a label value, so each score is spelled out."""
    weighted = " + ".join(f"{s} * {_feedback(s, window)}" for s in range(1, 6))
    return f"({weighted}) / sum(increase(meterseg_feedback_total[{window}]))"


def operations() -> Dashboard:
    opened = "meterseg_maintenance_requests_opened_total"
    resolved = "meterseg_maintenance_requests_resolved_total"
    res = "meterseg_maintenance_resolution_seconds"
    return Dashboard(
        uid="meterseg-operations",
        title="meterseg / Operations",
        intro=(
            "Field and customer operations: maintenance requests and technicians, satisfaction and "
            "complaints, new vs returning customers, bills paid and unpaid."
        ),
        time_from="now-7d",
        variables=[REGION, API_URL],
        rows=[
            Row("Maintenance", [
                stat("Requests opened",
                     "Maintenance requests opened in the selected regions and range.",
                     Query(f"sum({range_total(f'{opened}{{{R}}}')})", instant=True), no_value="0"),
                stat("Requests resolved",
                     "Maintenance requests resolved in the selected regions and range. Persistently fewer "
                     "resolved than opened means the backlog grows: plan more technician time.",
                     Query(f"sum({range_total(f'{resolved}{{{R}}}')})", instant=True), no_value="0"),
                stat("Mean resolution time",
                     "Mean time from request to resolution for requests resolved in the range (all regions).",
                     Query(f"sum({range_total(f'{res}_sum')}) / sum({range_total(f'{res}_count')})",
                           instant=True),
                     unit="s", decimals=1, thresholds=[(None, "green"), (2 * 86400, "orange"), (7 * 86400, "red")]),
                series("Opened vs resolved",
                       "Requests opened and resolved per hour in the selected regions. Opened above resolved for days: the "
                       "backlog grows, plan more technician time.",
                       Query(f"sum(rate({opened}{{{R}}}[$__rate_interval])) * 3600", legend="opened"),
                       Query(f"sum(rate({resolved}{{{R}}}[$__rate_interval])) * 3600", legend="resolved"),
                       width=12),
            ]),
            Row("Resolution and technicians", [
                series("Resolution time per day",
                       "Mean and 90th percentile of the time to resolution of the requests resolved each day "
                       "(all regions).",
                       Query(f"sum(increase({res}_sum[1d])) / sum(increase({res}_count[1d]))", legend="mean",
                             interval="1d"),
                       Query(f"histogram_quantile(0.9, sum by (le) (increase({res}_bucket[1d])))", legend="p90",
                             interval="1d"),
                       unit="s", width=8),
                bars("Requests opened by region",
                     "Requests opened per region over the range; compare with the late and faulty meters of "
                     "the region.",
                     Query(f"sum by (region) ({range_total(f'{opened}{{{R}}}')})", legend="{{region}}",
                           instant=True)),
                bars("Requests resolved per technician",
                     "Requests resolved per technician over the range: spot overloaded or idle technicians.",
                     Query("sum by (technician) (increase(meterseg_maintenance_requests_by_technician_total"
                           "[$__range]))", legend="{{technician}}", instant=True)),
            ]),
            Row("Customers", [
                stat("Satisfaction average",
                     "Average satisfaction score (1-5) of the feedback received in the range (all regions): "
                     "the count of each score times the score, over the count.",
                     Query(satisfaction("$__range"), instant=True),
                     decimals=2, min_value=1, max_value=5,
                     thresholds=[(None, "red"), (3, "orange"), (4, "green")]),
                stat("Complaints (score ≤ 2)",
                     "Feedback with score 1 or 2 in the range. Call back the customers; the customer view of "
                     "the API shows their meters' health.",
                     Query('sum(increase(meterseg_feedback_total{score=~"1|2"}[$__range]))', instant=True),
                     no_value="0", thresholds=[(None, "green"), (1, "orange")]),
                series("Satisfaction per day",
                       "Average score of each day's feedback (one-day windows at a one-day step). A falling line "
                       "after an outage or a billing run tells where to look.",
                       Query(satisfaction("1d"), legend="average score", interval="1d"),
                       decimals=2, min_value=1, max_value=5, width=8),
                series("Feedback per day by score",
                       "Feedback messages per day, stacked by score; scores 1 and 2 are complaints. A day with many "
                       "complaints usually follows an outage or a billing run.",
                       Query("sum by (score) (increase(meterseg_feedback_total[1d]))", legend="score {{score}}",
                             interval="1d"),
                       bars=True, stacked=True, width=8),
            ]),
            Row("Customers and bills", [
                pie("New vs returning customers",
                    "Customers with state per kind: new (one purchase period) vs returning.",
                    Query("sum by (kind) (meterseg_customers)", legend="{{kind}}", instant=True),
                    width=4),
                series("Customers over time",
                       "New and returning customers over time: acquisition (new) against retention (returning).",
                       Query("sum by (kind) (meterseg_customers)", legend="{{kind}}"),
                       stacked=True, width=4),
                stat("Bills issued and paid",
                     "Bills issued and bills paid in the range (a payment may settle a bill issued earlier).",
                     Query("sum by (status) (increase(meterseg_bills_total[$__range]))", legend="{{status}}",
                           instant=True),
                     width=4, height=8),
                stat("Amount issued and paid",
                     "Amount billed and amount paid in the range.",
                     Query("sum by (status) (increase(meterseg_bills_amount_total[$__range]))", legend="{{status}}",
                           instant=True),
                     decimals=0, width=4, height=8),
                stat("Outstanding bills",
                     "Bills issued and not paid yet, fleet-wide, now (count and amount): the collections team's "
                     "number.",
                     Query("max(meterseg_bills_outstanding)", legend="bills", instant=True),
                     width=4, height=8),
                stat("Unpaid share of billed amount",
                     "1 - paid / issued amount in the range: how much of what was billed is still open.",
                     Query('1 - sum(increase(meterseg_bills_amount_total{status="paid"}[$__range]))'
                           ' / sum(increase(meterseg_bills_amount_total{status="issued"}[$__range]))', instant=True),
                     unit="percentunit", decimals=1, width=4, height=8,
                     thresholds=[(None, "green"), (0.1, "orange"), (0.25, "red")]),
            ]),
        ],
    )


def segments() -> Dashboard:
    members = "meterseg_segment_members"
    # size-weighted over workers: sum_w(ratio_w * size_w) / sum_w(size_w) = (entries + exits) / size
    volatility = (
        f"sum by (family, segment) (meterseg_segment_volatility_ratio{{{F}}}"
        f" * on (job, instance, family, segment) {members}{{{F}}})"
        f" / sum by (family, segment) ({members}{{{F}}})"
    )
    return Dashboard(
        uid="meterseg-segments",
        title="meterseg / Segments",
        intro=(
            "Customer segments of the three families (rfm, behaviour, rule): sizes, movements, volatility, the "
            "RFM distribution, and the behaviour model's drift and version. The region variable does not apply "
            "(segment metrics have no region label); the family variable filters instead."
        ),
        time_from="now-24h",
        variables=[REGION, FAMILY, API_URL],
        rows=[
            Row("Model", [
                stat("Behaviour model version",
                     "Version of the fleet-wide behaviour model (highest over workers). It moves on re-fits and "
                     "after drift; segment changes carry the version that caused them.",
                     Query("max(meterseg_model_version)", instant=True), decimals=0),
                stat("Drift events (range)",
                     "Drift detections of the behaviour model in the range. After a drift, expect a new model "
                     "version and a wave of behaviour-segment changes; check that it matches a real change "
                     "(season, tariff) before acting on the new segments.",
                     Query("sum(increase(meterseg_drift_events_total[$__range]))", instant=True), no_value="0",
                     decimals=0, thresholds=[(None, "green"), (1, "orange")]),
                series("Drift events and model version",
                       "Drift detections per signal and the model version over time: each drift should be followed by a "
                       "version step.",
                       Query("sum by (signal) (increase(meterseg_drift_events_total[$__rate_interval]))",
                             legend="drift: {{signal}}"),
                       Query("max(meterseg_model_version)", legend="model version"),
                       width=16, height=5),
            ]),
            Row("Sizes", [
                series("Customers per family",
                       "Members per segment family. rfm and behaviour partition the customers; rule segments "
                       "may overlap, so their sum can exceed the number of customers.",
                       Query(f"sum by (family) ({members}{{{F}}})", legend="{{family}}")),
                series("Segment sizes",
                       "Members per segment over time. Sudden steps follow a model version change or a rule edit; slow "
                       "trends are customers changing behaviour.",
                       Query(f"sum by (family, segment) ({members}{{{F}}})", legend="{{family}}/{{segment}}"),
                       width=10),
                pie("RFM segment distribution",
                    "Customers per named RFM segment (Champions, Loyal, At Risk...): the marketing team's targeting base; "
                    "a growing At Risk share calls for a retention campaign.",
                    Query(f'sum by (segment) ({members}{{family="rfm"}})', legend="{{segment}}", instant=True),
                    width=6),
            ]),
            Row("Movement", [
                series("Entries and exits",
                       "Customers entering (above the axis) and leaving (below) segments per minute, per family.",
                       Query(f"sum by (family) (rate(meterseg_segment_entries_total{{{F}}}[$__rate_interval])) * 60",
                             legend="{{family}} entries"),
                       Query(f"sum by (family) (rate(meterseg_segment_exits_total{{{F}}}[$__rate_interval])) * 60",
                             legend="{{family}} exits"),
                       negative=".* exits", width=12),
                series("Volatility",
                       "(entries + exits) / size per day, per segment, weighted by each worker's members. A "
                       "volatile segment is a poor campaign target: its members will not stay.",
                       Query(volatility, legend="{{family}}/{{segment}}"),
                       unit="percentunit", width=12),
                table("Segments",
                      "Every segment with its size now, entries and exits in the range and volatility. Row links "
                      "open the segment, its members and its size history in the engine's API.",
                      Query(f"sum by (family, segment) ({members}{{{F}}})", instant=True, table=True),
                      Query(f"sum by (family, segment) (increase(meterseg_segment_entries_total{{{F}}}[$__range]))",
                            instant=True, table=True),
                      Query(f"sum by (family, segment) (increase(meterseg_segment_exits_total{{{F}}}[$__range]))",
                            instant=True, table=True),
                      Query(volatility, instant=True, table=True),
                      columns={"family": "Family", "Value #A": "Members",
                               "Value #B": "Entries", "Value #C": "Exits", "Value #D": "Volatility"},
                      links=[Link("Segment ${__data.fields.segment}", f"{API}/segments/${{__data.fields.segment}}"),
                             Link("Members", f"{API}/segments/${{__data.fields.segment}}/members"),
                             Link("Size history", f"{API}/segments/${{__data.fields.segment}}/history")],
                      decimals=2, width=24, height=10),
            ]),
            Row("Inputs", [
                series("Profile updates",
                       "Customer profile updates per second (RFM and load-shape features). Zero while readings and purchases "
                       "flow means segmentation is not being fed.",
                       Query("sum by (kind) (rate(meterseg_profile_updates_total[$__rate_interval]))",
                             legend="{{kind}}"),
                       unit="cps", width=12),
                series("Purchases applied",
                       "Purchase events applied to RFM state per second, per event type (purchases, refunds...).",
                       Query("sum by (event_type) (rate(meterseg_purchases_applied_total[$__rate_interval]))",
                             legend="{{event_type}}"),
                       unit="cps", width=12),
            ]),
        ],
    )


def engine() -> Dashboard:
    lat = "meterseg_processing_latency_seconds_bucket"
    batch = "meterseg_batch_processing_seconds_bucket"
    redis = "meterseg_redis_operation_seconds_bucket"
    return Dashboard(
        uid="meterseg-engine",
        title="meterseg / Engine",
        intro=(
            "The workers themselves: throughput, latency, errors, Redis, rebalances, recovery, checkpoints "
            "and liveness, per worker (`instance`). The region variable does not apply here."
        ),
        time_from="now-1h",
        variables=[REGION],
        rows=[
            Row("Workers", [
                stat("Workers up",
                     "Workers answering Prometheus' scrape (`up` of job meterseg). Fewer than deployed fires "
                     "MeterSegWorkerDown.",
                     Query('sum(up{job="meterseg"})', instant=True), decimals=0),
                stat("Rebalances (range)",
                     "Partition assignments received in the range. Frequent rebalances (workers crashing, "
                     "session timeouts) stall processing and cause reprocessing (idempotent, but slow).",
                     Query("sum(increase(meterseg_rebalances_total[$__range]))", instant=True), decimals=0,
                     no_value="0"),
                stat("Since last progress (max)",
                     "Seconds since the slowest consumer last processed a batch. High while events arrive "
                     "means a stuck consumer: restart that worker.",
                     Query("max(time() - meterseg_consumer_last_progress_timestamp_seconds)", instant=True),
                     unit="s", decimals=0, thresholds=[(None, "green"), (60, "orange"), (300, "red")]),
                table("Workers",
                      "One row per worker: messages per second and seconds since last poll and last progress. "
                      "The row link opens the worker's raw metrics.",
                      Query("sum by (instance) (rate(meterseg_events_consumed_total[$__rate_interval]))",
                            instant=True, table=True),
                      Query("max by (instance) (time() - meterseg_consumer_last_poll_timestamp_seconds)",
                            instant=True, table=True),
                      Query("max by (instance) (time() - meterseg_consumer_last_progress_timestamp_seconds)",
                            instant=True, table=True),
                      columns={"Value #A": "Messages/s", "Value #B": "Since poll (s)",
                               "Value #C": "Since progress (s)"},
                      links=[Link("Metrics of ${__data.fields.instance}", "http://${__data.fields.instance}/metrics")],
                      decimals=1, width=12, height=5),
            ]),
            Row("Throughput", [
                series("Messages consumed per worker",
                       "Kafka messages consumed per second per worker. Uneven lines mean uneven partitions.",
                       Query("sum by (instance) (rate(meterseg_events_consumed_total[$__rate_interval]))",
                             legend="{{instance}}"),
                       unit="cps"),
                series("Readings and heartbeats per worker",
                       "Readings and heartbeats accepted per second per worker. Consumed messages without accepted readings "
                       "mean everything is rejected: see dead letters.",
                       Query("sum by (instance) (rate(meterseg_readings_processed_total[$__rate_interval]))",
                             legend="readings {{instance}}"),
                       Query("sum by (instance) (rate(meterseg_heartbeats_processed_total[$__rate_interval]))",
                             legend="heartbeats {{instance}}"),
                       unit="cps"),
                series("Windows emitted",
                       "Closed consumption windows emitted per second, per kind. Windows close on event time (and a timer); "
                       "none while readings flow means the event-time clock is stuck.",
                       Query("sum by (kind) (rate(meterseg_windows_emitted_total[$__rate_interval]))",
                             legend="{{kind}}"),
                       unit="cps"),
            ]),
            Row("Latency", [
                series("Processing latency",
                       "p50 and p99 delay to processing, from event time (interval end) and from broker append "
                       "time. Append-time latency is the engine's own delay; event-time includes the head-ends'.",
                       Query(f"histogram_quantile(0.5, sum by (le, source) (rate({lat}[$__rate_interval])))",
                             legend="p50 {{source}}"),
                       Query(f"histogram_quantile(0.99, sum by (le, source) (rate({lat}[$__rate_interval])))",
                             legend="p99 {{source}}"),
                       unit="s"),
                series("Batch processing time",
                       "p50 and p99 time to process one polled batch, per worker and pipeline. If p99 approaches the poll "
                       "interval, the worker falls behind: expect lag.",
                       Query(f"histogram_quantile(0.5, sum by (le, instance, pipeline) (rate({batch}[$__rate_interval])))",
                             legend="p50 {{pipeline}} {{instance}}"),
                       Query(f"histogram_quantile(0.99, sum by (le, instance, pipeline) (rate({batch}[$__rate_interval])))",
                             legend="p99 {{pipeline}} {{instance}}"),
                       unit="s"),
                series("Redis latency",
                       "p50 and p99 Redis round trip per operation (pipelines and scripts). Above a few "
                       "milliseconds on loopback, Redis is swapping, saving, or shared with something heavy.",
                       Query(f"histogram_quantile(0.5, sum by (le, operation) (rate({redis}[$__rate_interval])))",
                             legend="p50 {{operation}}"),
                       Query(f"histogram_quantile(0.99, sum by (le, operation) (rate({redis}[$__rate_interval])))",
                             legend="p99 {{operation}}"),
                       unit="s"),
            ]),
            Row("Errors and state", [
                series("Dead letters and duplicates per worker",
                       "Messages dead-lettered per second per worker and reason, and duplicates dropped. "
                       "Duplicates after a rebalance are expected (redelivery) and harmless.",
                       Query("sum by (instance, reason) (rate(meterseg_deadletter_total[$__rate_interval]))",
                             legend="dead letter {{reason}} {{instance}}"),
                       Query("sum by (instance) (rate(meterseg_duplicates_total[$__rate_interval]))",
                             legend="duplicates {{instance}}"),
                       unit="cps"),
                series("Consumer lag by partition",
                       "Messages behind per topic partition. One partition lagging alone is a hot key or a slow "
                       "worker; all lagging is capacity.",
                       Query("max by (topic, partition) (meterseg_consumer_lag_messages)",
                             legend="{{topic}}/{{partition}}")),
                series("Liveness",
                       "Seconds since each consumer last polled and last processed a batch. Poll age should stay "
                       "near zero even when idle; progress age grows only when no events arrive.",
                       Query("max by (instance, consumer) (time() - meterseg_consumer_last_poll_timestamp_seconds)",
                             legend="poll {{consumer}} {{instance}}"),
                       Query("max by (instance, consumer) (time() - meterseg_consumer_last_progress_timestamp_seconds)",
                             legend="progress {{consumer}} {{instance}}"),
                       unit="s"),
                series("Recovery time",
                       "Average time to restore partition state on assignment since each worker started, per "
                       "pipeline. Growing recovery means the checkpoints grow: look at state size.",
                       Query("sum by (instance, pipeline) (meterseg_recovery_seconds_sum)"
                             " / sum by (instance, pipeline) (meterseg_recovery_seconds_count)",
                             legend="{{pipeline}} {{instance}}"),
                       unit="s"),
                series("Checkpoints",
                       "State checkpoints written to Redis per minute, per worker and pipeline. Zero while events "
                       "flow means a restart would replay a lot.",
                       Query("sum by (instance, pipeline) (rate(meterseg_checkpoints_total[$__rate_interval])) * 60",
                             legend="{{pipeline}} {{instance}}")),
                series("Meter alerts",
                       "Meter alerts raised and cleared per minute, per kind. Raised without matching cleared means meters "
                       "stay faulty: maintenance work.",
                       Query("sum by (kind, action) (rate(meterseg_alerts_total[$__rate_interval])) * 60",
                             legend="{{kind}} {{action}}")),
            ]),
        ],
    )


DASHBOARDS = (fleet, consumption, operations, segments, engine)


# -- JSON model ---------------------------------------------------------------------------------
def _target(q: Query, ref: str) -> JSON:
    t: JSON = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": q.expr,
        "instant": q.instant,
        "legendFormat": q.legend or "__auto",
        "range": not q.instant,
        "refId": ref,
    }
    if q.table:
        t["format"] = "table"
    if q.interval:
        t["interval"] = q.interval
    return t


def _thresholds(p: Panel) -> JSON:
    steps = p.thresholds or [(None, "green")]
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _field_config(p: Panel) -> JSON:
    defaults: JSON = {"unit": p.unit, "thresholds": _thresholds(p), "color": {"mode": "palette-classic"}}
    if p.kind in ("stat", "bargauge") or p.thresholds:
        defaults["color"] = {"mode": "thresholds"} if p.thresholds else {"mode": "palette-classic"}
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.no_value is not None:
        defaults["noValue"] = p.no_value
    if p.min_value is not None:
        defaults["min"] = p.min_value
    if p.max_value is not None:
        defaults["max"] = p.max_value
    if p.links:
        defaults["links"] = [{"targetBlank": True, "title": lk.title, "url": lk.url} for lk in p.links]
    overrides: list[JSON] = []
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if p.bars else "line",
            "fillOpacity": 60 if p.bars else (30 if p.stacked else 10),
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if p.stacked else "none"},
        }
        if p.negative:
            overrides.append({
                "matcher": {"id": "byRegexp", "options": p.negative},
                "properties": [{"id": "custom.transform", "value": "negative-Y"}],
            })
    if p.kind == "table":
        defaults["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}, "filterable": True}
    return {"defaults": defaults, "overrides": overrides}


def _options(p: Panel) -> JSON:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if p.kind == "timeseries":
        return {
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if p.kind == "stat":
        return {
            "colorMode": "value", "graphMode": "none", "justifyMode": "auto", "orientation": "auto",
            "reduceOptions": reduce, "showPercentChange": False, "textMode": "auto", "wideLayout": True,
        }
    if p.kind == "bargauge":
        return {
            "displayMode": "gradient", "maxVizHeight": 300, "minVizHeight": 16, "minVizWidth": 8,
            "namePlacement": "auto", "orientation": "horizontal", "reduceOptions": reduce,
            "showUnfilled": True, "sizing": "auto", "valueMode": "color",
        }
    if p.kind == "piechart":
        return {
            "displayLabels": ["percent"],
            "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value"]},
            "pieType": "donut", "reduceOptions": reduce, "tooltip": {"mode": "single", "sort": "none"},
        }
    if p.kind == "table":
        return {"cellHeight": "sm", "footer": {"show": False}, "showHeader": True}
    if p.kind == "text":
        return {"code": {"language": "markdown"}, "content": p.content, "mode": "markdown"}
    raise ValueError(f"unknown panel kind {p.kind}")


def _transformations(p: Panel) -> list[JSON]:
    if p.kind != "table":
        return []
    out: list[JSON] = []
    if len(p.queries) > 1:
        out.append({"id": "merge", "options": {}})
    out.append({
        "id": "organize",
        "options": {
            "excludeByName": {name: True for name in p.hidden_columns},
            "indexByName": {},
            "renameByName": dict(p.columns),
        },
    })
    return out


def _panel_json(p: Panel, pid: int, x: int, y: int) -> JSON:
    out: JSON = {
        "description": p.help,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "id": pid,
        "options": _options(p),
        "title": p.title,
        "type": "text" if p.kind == "text" else p.kind,
    }
    if p.kind != "text":
        out["datasource"] = DATASOURCE
        out["fieldConfig"] = _field_config(p)
        out["targets"] = [_target(q, chr(ord("A") + i)) for i, q in enumerate(p.queries)]
        if p.kind == "table":
            out["transformations"] = _transformations(p)
    return out


def _variable_json(v: Variable) -> JSON:
    if v.query:
        return {
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "datasource": DATASOURCE,
            "definition": v.query,
            "hide": 0,
            "includeAll": True,
            "label": v.label,
            "multi": True,
            "name": v.name,
            "options": [],
            "query": {"qryType": 1, "query": v.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "skipUrlSync": False,
            "sort": 1,
            "type": "query",
        }
    return {
        "current": {"selected": False, "text": v.textbox_default, "value": v.textbox_default},
        "hide": 0,
        "label": v.label,
        "name": v.name,
        "options": [{"selected": True, "text": v.textbox_default, "value": v.textbox_default}],
        "query": v.textbox_default,
        "skipUrlSync": False,
        "type": "textbox",
    }


def dashboard_json(d: Dashboard) -> JSON:
    """The Grafana JSON model of one dashboard; panels flow left to right in rows of 24 columns."""
    panels: list[JSON] = []
    pid = 0
    y = 0
    for row in d.rows:
        pid += 1
        panels.append({"collapsed": False, "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}, "id": pid,
                       "panels": [], "title": row.title, "type": "row"})
        y += 1
        x = 0
        line_height = 0
        for p in row.panels:
            if x + p.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            pid += 1
            panels.append(_panel_json(p, pid, x, y))
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    others = [{"asDropdown": True, "icon": "external link", "includeVars": True, "keepTime": True,
               "tags": ["meterseg"], "targetBlank": False, "title": "meterseg dashboards", "type": "dashboards"}]
    return {
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "description": d.intro,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": others,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["meterseg"],
        "templating": {"list": [_variable_json(v) for v in d.variables]},
        "time": {"from": d.time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": d.title,
        "uid": d.uid,
        "version": 1,
        "weekStart": "",
    }


def render_json(d: Dashboard) -> str:
    return json.dumps(dashboard_json(d), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- docs ---------------------------------------------------------------------------------------
def render_docs(dashboards: list[Dashboard]) -> str:
    lines = [
        "# Dashboards",
        "",
        "<!-- Generated by grafana/build_dashboards.py; edit the builder, then run it. -->",
        "",
        "Grafana loads these dashboards from `grafana/dashboards/` (folder *meterseg*) with the Prometheus "
        "datasource (uid `prometheus`). They are generated by `grafana/build_dashboards.py`; "
        "`tests/operator/test_dashboards.py` checks that the committed JSON equals the builder's output, that "
        "every query uses only metrics of `stream/metrics.py`, parses in a real Prometheus, and returns data when "
        "every metric is exposed with the label values the queries ask for; `tests/operator/test_panels_live.py` "
        "evaluates every panel query against a Prometheus scraping the real engine on a simulated fleet.",
        "",
        "Conventions:",
        "",
        "- **Variables**: `region` (multi-value, *All* = `.*`) filters every query on a metric with a `region` "
        "label (regional energy and revenue, meters registered, maintenance requests). Health, latency, "
        "feedback, bills, customers and segment metrics carry no region label, so those panels show the whole "
        "fleet whatever the region selection. `api_url` (default `http://localhost:6066`, a worker's web port) "
        "is the base of the drill-down links into the engine's HTTP API (`/meters/{id}`, `/customers/{id}`, "
        "`/segments/{id}`, `/meters/top`); the API asks for its bearer token.",
        "- **Time range**: rates use `$__rate_interval`; totals for the selected range use "
        "`increase(...[$__range])` evaluated at the end of the range. Daily and monthly bars use "
        "`increase(...[1d])` / `increase(...[30d])` with a minimum step of one day / 30 days.",
        "- **Workers**: gauges of per-worker state (meters by health, late meters, lag, customers, segment "
        "members) are summed over workers; the registry (every worker reads all of it) and the model version "
        "(fleet-wide) take the maximum.",
        "- A counter series that appears in the middle of the range (its first event) is counted from its first "
        "scrape: `increase` misses that first increment. Totals of rare events are therefore lower bounds.",
        "",
    ]
    for d in dashboards:
        variables = ", ".join(f"`{v.name}`" for v in d.variables)
        lines += [f"## {d.title}", "", f"File `grafana/dashboards/{d.uid}.json`, uid `{d.uid}`. "
                  f"Variables: {variables}. Default range: `{d.time_from}` to now.", "", d.intro, ""]
        for row in d.rows:
            lines += [f"### {row.title}", ""]
            for p in row.panels:
                lines += [f"#### {p.title} ({p.kind})", "", p.help, ""]
                for i, q in enumerate(p.queries):
                    label = f" — `{q.legend}`" if q.legend else ""
                    ref = chr(ord("A") + i)
                    kind = "instant" if q.instant else "range"
                    step = f", step ≥ {q.interval}" if q.interval else ""
                    lines += [f"Query {ref}{label} ({kind}{step}):", "", "```promql", q.expr, "```", ""]
                for lk in p.links:
                    lines += [f"Link *{lk.title}*: `{lk.url}`", ""]
                if p.kind == "text":
                    lines += ["Content:", "", *[f"> {ln}" if ln else ">" for ln in p.content.splitlines()], ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_alerts(rules_path: Path = RULES_PATH) -> str:
    """The alert rules as a docs section (expression, for, severity, summary, runbook)."""
    doc = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    lines = [
        "## Alerts",
        "",
        f"Alert rules live in `{rules_path.relative_to(REPO)}` (loaded by both Prometheus configurations) and are "
        "unit-tested firing and not firing in `prometheus/tests/rules_test.yml` "
        "(`promtool test rules prometheus/tests/rules_test.yml`).",
        "",
    ]
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            notes = rule["annotations"]
            lines += [
                f"### {rule['alert']}",
                "",
                f"Group `{group['name']}`, severity `{rule['labels']['severity']}`, for `{rule.get('for', '0m')}`. "
                f"Summary: {notes['summary']}",
                "",
                "```promql",
                str(rule["expr"]).strip(),
                "```",
                "",
                f"Runbook: {notes['runbook']}",
                "",
            ]
    return "\n".join(lines)


README_PATH = REPO / "README.md"
README_BEGIN = "<!-- dashboards:begin (generated by grafana/build_dashboards.py) -->"
README_END = "<!-- dashboards:end -->"


def render_readme_section(dashboards: list[Dashboard]) -> str:
    """The README's compact panel-by-panel table of every dashboard (full text in docs/dashboards.md)."""
    lines = [README_BEGIN, ""]
    for d in dashboards:
        lines += [f"#### {d.title}", "", d.intro, "", "| panel | what it shows | query |", "|---|---|---|"]
        for row in d.rows:
            for p in row.panels:
                gist = p.help.split(". ")[0].rstrip(".").replace("|", "\\|")
                exprs = "<br>".join(f"`{q.expr}`".replace("|", "\\|") for q in p.queries) or "(text)"
                lines.append(f"| {row.title} / {p.title} | {gist} | {exprs} |")
        lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def readme_with_section(dashboards: list[Dashboard]) -> str:
    text = README_PATH.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"README.md lacks the markers {README_BEGIN!r} ... {README_END!r}")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return head + render_readme_section(dashboards) + tail


def outputs() -> dict[Path, str]:
    """Every generated file and its content."""
    dashboards = [make() for make in DASHBOARDS]
    out = {DASHBOARD_DIR / f"{d.uid}.json": render_json(d) for d in dashboards}
    out[DOCS_PATH] = render_docs(dashboards) + "\n" + render_alerts()
    out[README_PATH] = readme_with_section(dashboards)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs from the output")
    args = parser.parse_args(argv)
    stale = []
    for path, content in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
