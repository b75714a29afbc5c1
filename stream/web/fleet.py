"""``/fleet``: the fleet by region - daily consumption over a date range, and meters with their health.

Read-only views for dashboards (the web console, ``console/``): what a
utility's overview page shows with a date range and a region filter.

* ``GET /fleet/daily`` sums the closed daily meter windows the ingest pipeline
  keeps per UTC day and meter shard (``{p}:kwh:{day}``, :class:`stream.state.meters.MeterStore`)
  per region, in event time: the simulator's days, not the wall clock. One
  ``ZRANGE`` per day and shard, so it costs O(meters × days); at 100 000 meters a week
  is about 700 000 scores read.
* ``GET /fleet/revenue`` is the revenue booked per event day and region (tariff
  revenue and purchases of the closed regional windows, the amounts of
  ``meterseg_region_revenue_total`` but per UTC day of the window, see
  :mod:`stream.state.regional`): a revised window counts with its revised
  amount only. Kept for the latest ``Settings.region_revenue_days`` event days.
* ``GET /fleet/meters`` lists meters with region, health state, reasons and
  since when (for a silent meter: the time it was last heard of plus the
  allowed gap), filtered by region, state and reason, with counts per state
  and per region. Health is written to Redis when it changes
  (:class:`stream.state.health.HealthStore`), so a registered meter without a
  record never had a finding: it counts as good.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from processors.health import HEALTH_STATES
from stream.state.health import HealthStore
from stream.state.meters import MeterStore
from stream.state.regional import revenue_by_day, revenue_days
from stream.web.context import ApiContext, text
from stream.web.errors import bad_request
from stream.web.meters import MAX_RANGE_DAYS, _date, _shift, latest_day
from stream.web.pagination import parse_page, window
from stream.web.routes import PAGE_PARAMS, ApiRequest, Param, route

DEFAULT_DAYS = 30
LATE_REASON = "silent"


def meter_regions(ctx: ApiContext) -> dict[str, str]:
    """meter id → region, from the registry."""
    return {m: meta.region for meta in ctx.directory.customers().values() for m in meta.meters}


def _regions(ctx: ApiContext) -> list[str]:
    return sorted({meta.region for meta in ctx.directory.customers().values()})


def _region_filter(ctx: ApiContext, raw: str | None) -> str | None:
    if raw is None:
        return None
    if raw not in _regions(ctx):
        raise bad_request(f"unknown region {raw!r}; known: {', '.join(_regions(ctx)) or 'none yet'}",
                          error="invalid_parameter")  # fmt: skip
    return raw


@route("GET", "/fleet/daily", summary="kWh imported per UTC day and region over a date range", tag="fleet",
       params=(Param("region", "only this region"),
               Param("from", "first UTC day, YYYY-MM-DD (default: 29 days before `to`)", {"type": "string", "format": "date"}),
               Param("to", "last UTC day, YYYY-MM-DD (default: the latest day with data)", {"type": "string", "format": "date"})),
       response={"type": "object", "properties": {"regions": {"type": "array"}, "days": {"type": "array"}}})  # fmt: skip
async def daily(ctx: ApiContext, req: ApiRequest) -> Any:
    """Sum of the closed daily meter windows per day and region, with how many meters reported that day."""
    region = _region_filter(ctx, req.arg("region"))
    last = _date(req.arg("to"), "to")
    first = _date(req.arg("from"), "from")
    if last is None:
        last = _shift(first, DEFAULT_DAYS - 1) if first else await latest_day(ctx)
    regions = _regions(ctx)
    if last is None:
        return {"from": None, "to": None, "region": region, "regions": regions, "days": []}
    first = first or _shift(last, -(DEFAULT_DAYS - 1))
    if first > last:
        raise bad_request("from must not be after to", error="invalid_parameter")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise bad_request(f"at most {MAX_RANGE_DAYS} days", error="invalid_parameter")
    store = MeterStore(ctx.redis, ctx.meter_keys)
    days = [_shift(first, i) for i in range((last - first).days + 1)]
    shards = store.keys.shards
    pipe = ctx.redis.pipeline(transaction=False)
    for d in days:
        for shard in range(shards):
            pipe.zrange(store.day_key(d.isoformat(), region, shard), 0, -1, withscores=True)
    replies = await pipe.execute()
    where = meter_regions(ctx)
    out = []
    for i, d in enumerate(days):
        rows = [row for shard_rows in replies[i * shards : (i + 1) * shards] for row in shard_rows]
        by_region: dict[str, float] = {}
        meters: Counter[str] = Counter()
        for m, kwh in rows:
            r = where.get(text(m), "unknown")
            by_region[r] = by_region.get(r, 0.0) + float(kwh)
            meters[r] += 1
        out.append({"day": d.isoformat(), "kwh": round(sum(by_region.values()), 3), "meters": sum(meters.values()),
                    "by_region": {r: {"kwh": round(v, 3), "meters": meters[r]} for r, v in sorted(by_region.items())}})  # fmt: skip
    return {"from": first.isoformat(), "to": last.isoformat(), "region": region, "regions": regions, "days": out}


_AMOUNTS = {"type": "object", "additionalProperties": {"type": "number"}, "description": "region → amount"}
REVENUE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["from", "to", "region", "regions", "revenue", "by_region", "days"],
    "properties": {
        "from": {"type": ["string", "null"], "format": "date"},
        "to": {"type": ["string", "null"], "format": "date"},
        "region": {"type": ["string", "null"]},
        "regions": {"type": "array", "items": {"type": "string"}},
        "revenue": {"type": "number", "description": "total over the days (and the region, if given)"},
        "by_region": _AMOUNTS,
        "days": {"type": "array", "items": {
            "type": "object", "required": ["day", "revenue", "by_region"],
            "properties": {"day": {"type": "string", "format": "date"}, "revenue": {"type": "number"},
                           "by_region": _AMOUNTS}}},
    },
}  # fmt: skip


@route("GET", "/fleet/revenue", summary="Revenue per UTC event day and region over a date range", tag="fleet",
       params=(Param("region", "only this region"),
               Param("from", "first UTC day, YYYY-MM-DD (default: 29 days before `to`)", {"type": "string", "format": "date"}),
               Param("to", "last UTC day, YYYY-MM-DD (default: the latest day with revenue)", {"type": "string", "format": "date"})),
       errors=(400,), response=REVENUE_RESPONSE)  # fmt: skip
async def revenue(ctx: ApiContext, req: ApiRequest) -> Any:
    """Revenue of the closed regional windows per event day and region; a correction counts once, revised."""
    region = _region_filter(ctx, req.arg("region"))
    last = _date(req.arg("to"), "to")
    first = _date(req.arg("from"), "from")
    regions = _regions(ctx)
    if last is None:
        if first is not None:
            last = _shift(first, DEFAULT_DAYS - 1)
        else:
            span = await revenue_days(ctx.redis, ctx.ns)
            last = span[1] if span else None
    if last is None:
        return {"from": None, "to": None, "region": region, "regions": regions, "revenue": 0.0, "by_region": {},
                "days": []}  # fmt: skip
    first = first or _shift(last, -(DEFAULT_DAYS - 1))
    if first > last:
        raise bad_request("from must not be after to", error="invalid_parameter")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise bad_request(f"at most {MAX_RANGE_DAYS} days", error="invalid_parameter")
    booked = await revenue_by_day(ctx.redis, ctx.ns, [_shift(first, i) for i in range((last - first).days + 1)], region)
    totals: dict[str, float] = {}
    days = []
    for day, amounts in booked.items():
        for r, v in amounts.items():
            totals[r] = totals.get(r, 0.0) + v
        days.append({"day": day, "revenue": round(sum(amounts.values()), 6), "by_region": amounts})
    return {"from": first.isoformat(), "to": last.isoformat(), "region": region, "regions": regions,
            "revenue": round(sum(totals.values()), 6), "by_region": {r: round(v, 6) for r, v in sorted(totals.items())},
            "days": days}  # fmt: skip


def _late(reasons: list[str]) -> bool:
    return LATE_REASON in reasons


@route("GET", "/fleet/meters", summary="Meters by region with health state and reasons, and counts per state",
       tag="fleet",
       params=(Param("region", "only this region"),
               Param("state", "comma-separated health states (default: every state)"),
               Param("reason", "only meters whose reasons include this one (e.g. silent: late meters)"),
               *PAGE_PARAMS),
       response={"type": "object", "properties": {"by_state": {"type": "object"}, "by_region": {"type": "object"},
                                                  "items": {"type": "array"}}})  # fmt: skip
async def meters(ctx: ApiContext, req: ApiRequest) -> Any:
    """Registered meters with their health: counts per state (and late = silent, faulty = poor for
    another reason) per region, and the meters that match the filters, sorted by id."""
    region = _region_filter(ctx, req.arg("region"))
    raw_states = req.arg("state")
    states = tuple(raw_states.split(",")) if raw_states else HEALTH_STATES
    bad = [s for s in states if s not in HEALTH_STATES]
    if bad:
        raise bad_request(f"unknown states {bad}; known: {', '.join(HEALTH_STATES)}", error="invalid_parameter")
    reason = req.arg("reason")
    page = parse_page(req.query)
    where = meter_regions(ctx)
    health = HealthStore(ctx.redis, ctx.meter_keys)
    state_of = await health.states()
    ids = sorted(set(where) | set(state_of))
    if region is not None:
        ids = [m for m in ids if where.get(m) == region]
    # reasons and since only for meters not in good health (one HMGET each), so a healthy fleet reads little
    flagged = [m for m in ids if state_of.get(m, "good") != "good"]
    pipe = ctx.redis.pipeline(transaction=False)
    for m in flagged:
        pipe.hmget(health.key(m), "reasons", "since")
    detail: dict[str, tuple[list[str], int | None]] = {}
    for m, (reasons, since) in zip(flagged, await pipe.execute() if flagged else [], strict=True):
        r = text(reasons) if reasons else ""
        detail[m] = (r.split(",") if r else [], int(since) if since else None)
    by_state: Counter[str] = Counter()
    by_region: dict[str, Counter[str]] = {}
    matching: list[str] = []
    for m in ids:
        s = state_of.get(m, "good")
        reasons = detail.get(m, ([], None))[0]
        counts = by_region.setdefault(where.get(m, "unknown"), Counter())
        for c in (by_state, counts):
            c[s] += 1
            if _late(reasons):
                c["late"] += 1
            if s == "poor" and any(r != LATE_REASON for r in reasons):
                c["faulty"] += 1
        if s in states and (reason is None or reason in reasons):
            matching.append(m)
    chunk, nxt = window(matching, page)
    items = []
    for m in chunk:
        reasons, since = detail.get(m, ([], None))
        items.append({"meter_id": m, "customer_id": ctx.directory.customer_of(m), "region": where.get(m),
                      "state": state_of.get(m, "good"), "reasons": reasons, "since": since})  # fmt: skip
    keys = (*HEALTH_STATES, "late", "faulty")
    return {
        "region": region,
        "meters": len(ids),
        "by_state": {k: by_state[k] for k in keys},
        "by_region": {r: {k: c[k] for k in keys} for r, c in sorted(by_region.items())},
        "total": len(matching),
        "items": items,
        "next_offset": nxt,
    }
