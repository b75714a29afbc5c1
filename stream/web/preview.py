"""Read-only views over the population: a rule's preview, the R × F grid, a segment's load shape.

They change nothing, so a builder may call them on every keystroke:

* ``GET /rules/preview?expression=`` validates a rule exactly as ``POST
  /segments`` does (400 with kind, line, column and offset) and, when valid,
  evaluates it over the same population a static segment would be activated
  over: the size it would have and a sample of members.
* ``GET /insights/rfm-grid`` counts customers per (R score, F score) cell, with
  the named RFM segment most of them are in.
* ``GET /segments/{id}/shape`` is the members' typical weekday and weekend
  day, hour by hour (00-23 UTC), in kWh: per member, the hourly shapes the
  segmentation pipeline keeps (:data:`processors.features.WEEKDAY_SHAPE`,
  :data:`~processors.features.WEEKEND_SHAPE`, stored as the ``hours`` field)
  times that kind of day's level, then the mean over the members. The levels
  come from ``features.mean_daily_kwh`` (*M*, the mean over all days) and
  ``features.weekday_weekend_ratio`` (*r*, weekday kWh per weekend-day kWh):
  weekday *W* = 7*M* / (5 + 2/*r*), weekend day *W*/*r*, so that a week of
  five weekdays and two weekend days averages *M* per day. A member without
  stored hourly shapes (a projection written before them) counts with its four
  period shares spread evenly over their six hours, for both kinds of day
  (``with_hourly_shape`` says how many had the real ones). The features are
  decayed means, so this is the segment's recent typical day.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from processors.rules import KNOWN_ATTRIBUTES, compile_rule
from stream.web.context import ApiContext, load_population
from stream.web.errors import bad_request
from stream.web.pagination import int_param
from stream.web.routes import ApiRequest, Param, route
from stream.web.segments import member_set, require_segment

PERIOD_SHARES: tuple[str, ...] = (
    "features.share_night", "features.share_morning", "features.share_daytime", "features.share_evening",
)  # fmt: skip
_HOUR = {"type": "object", "required": ["hour", "label", "weekday_kwh", "weekend_kwh"],
         "properties": {"hour": {"type": "integer", "minimum": 0, "maximum": 23},
                        "label": {"type": "string", "description": "HH-HH, UTC"},
                        "weekday_kwh": {"type": "number", "description": "members' mean kWh in this hour of a weekday"},
                        "weekend_kwh": {"type": "number",
                                        "description": "members' mean kWh in this hour of a weekend day"}}}  # fmt: skip
SHAPE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["segment", "members", "with_features", "with_hourly_shape", "hours"],
    "properties": {
        "segment": {"type": "string"},
        "members": {"type": "integer", "description": "members now"},
        "with_features": {"type": "integer", "description": "members with load-shape features (the ones averaged)"},
        "with_hourly_shape": {"type": "integer",
                              "description": "of those, members with stored hourly shapes (the others: period "
                                             "shares spread evenly over their hours)"},
        "mean_daily_kwh": {"type": "number", "description": "members' mean kWh per day over a week"},
        "weekday_kwh": {"type": "number", "description": "members' mean kWh on a weekday (sum of the hours)"},
        "weekend_kwh": {"type": "number", "description": "members' mean kWh on a weekend day (sum of the hours)"},
        "hours": {"type": "array", "items": _HOUR, "description": "24 hours, 00-01 to 23-24 UTC; empty without features"},
    },
}  # fmt: skip
MAX_EXPRESSION = 10_000


@route("GET", "/rules/preview", summary="Validate a rule and count the customers it selects (changes nothing)",
       tag="segments",
       params=(Param("expression", "rule language, e.g. region == \"North\" and clv > 500", required=True),
               Param("limit", "sample size (0–1000, default 20)", {"type": "integer", "minimum": 0, "maximum": 1000})),
       errors=(400,),
       response={"type": "object", "properties": {"size": {"type": "integer"}, "population": {"type": "integer"},
                                                  "sample": {"type": "array", "items": {"type": "string"}}}})  # fmt: skip
async def preview(ctx: ApiContext, req: ApiRequest) -> Any:
    """The size a static segment of this rule would have now, and the first members by id."""
    expression = req.query.get("expression")
    if expression is None or not expression.strip():
        raise bad_request("expression is required", error="missing_parameter")
    if len(expression) > MAX_EXPRESSION:
        raise bad_request(f"expression is longer than {MAX_EXPRESSION} characters", error="invalid_parameter")
    limit = int_param(req.query, "limit", 0, 1000)
    limit = 20 if limit is None else limit
    try:
        rule = compile_rule(expression, known_names=KNOWN_ATTRIBUTES)  # RuleSyntaxError -> 400 with position
    except RecursionError:
        raise bad_request("the expression is nested too deeply", error="invalid_rule", kind="too_deep") from None
    pop = await load_population(ctx)
    mask = rule.mask(pop.columns, len(pop))
    chosen = sorted(pop.ids[i] for i in np.nonzero(mask)[0].tolist())
    return {"expression": expression, "size": len(chosen), "population": len(pop), "sample": chosen[:limit]}


@route("GET", "/insights/rfm-grid", summary="Customers per R score × F score, with the RFM segment of each cell",
       tag="insights",
       response={"type": "object", "properties": {"cells": {"type": "array"}, "scored": {"type": "integer"}}})  # fmt: skip
async def rfm_grid(ctx: ApiContext, req: ApiRequest) -> Any:
    """Counts of customers with scores, per (r_score, f_score), and the segment most of each cell's customers are in."""
    pop = await load_population(ctx)
    r = pop.columns.get("rfm.r_score")
    f = pop.columns.get("rfm.f_score")
    seg = pop.columns.get("rfm.segment_name")
    if r is None or f is None:
        return {"scored": 0, "cells": []}
    ok = ~(np.isnan(r.astype(np.float64)) | np.isnan(f.astype(np.float64)))
    cells: dict[tuple[int, int], Counter[str]] = {}
    for i in np.nonzero(ok)[0].tolist():
        name = seg[i] if seg is not None and isinstance(seg[i], str) else ""
        cells.setdefault((int(r[i]), int(f[i])), Counter())[name] += 1
    return {
        "scored": int(ok.sum()),
        "cells": [{"r": k[0], "f": k[1], "customers": sum(c.values()), "segment": c.most_common(1)[0][0]}
                  for k, c in sorted(cells.items())],
    }  # fmt: skip


@route("GET", "/segments/{id}/shape", summary="Members' typical weekday and weekend day: kWh in each hour",
       tag="segments", errors=(400, 404), response=SHAPE_RESPONSE)  # fmt: skip
async def shape(ctx: ApiContext, req: ApiRequest) -> Any:
    """Mean kWh in each hour of a weekday and of a weekend day over the members with load-shape features."""
    family, seg, _ = await require_segment(ctx, req.path["id"])
    pop = await load_population(ctx)
    mask = pop.mask(await member_set(ctx, family, seg))
    out: dict[str, Any] = {"segment": f"{family}:{seg}", "members": int(mask.sum()), "with_features": 0,
                           "with_hourly_shape": 0, "hours": []}  # fmt: skip
    cols = pop.columns
    needed = ["features.mean_daily_kwh", "features.weekday_weekend_ratio", *PERIOD_SHARES]
    if any(n not in cols for n in needed):
        return out
    table = np.column_stack([cols[n].astype(np.float64) for n in needed])
    rows = mask & ~np.isnan(table).any(axis=1) & (table[:, 1] > 0)
    if not rows.any():
        return out
    table = table[rows]
    daily, ratio = table[:, 0], table[:, 1]
    has_hours = pop.has_hours[rows] if len(pop.has_hours) == len(pop) else np.zeros(len(table), np.bool_)
    shares = (pop.hours[rows].astype(np.float64) if has_hours.any()
              else np.zeros((len(table), 48), dtype=np.float64))  # fmt: skip
    spread = np.repeat(table[:, 2:] / 6.0, 6, axis=1)  # the period shares over their six hours
    shares[~has_hours] = np.hstack([spread, spread])[~has_hours]
    weekday_level = 7.0 * daily / (5.0 + 2.0 / ratio)
    weekday = (weekday_level[:, None] * shares[:, :24]).mean(axis=0)
    weekend = ((weekday_level / ratio)[:, None] * shares[:, 24:]).mean(axis=0)
    return {
        **out,
        "with_features": len(table),
        "with_hourly_shape": int(has_hours.sum()),
        "mean_daily_kwh": round(float(daily.mean()), 4),
        "weekday_kwh": round(float(weekday.sum()), 4),
        "weekend_kwh": round(float(weekend.sum()), 4),
        "hours": [{"hour": h, "label": f"{h:02d}-{h + 1:02d}", "weekday_kwh": round(float(wd), 4),
                   "weekend_kwh": round(float(we), 4)}
                  for h, (wd, we) in enumerate(zip(weekday, weekend, strict=True))],
    }  # fmt: skip
