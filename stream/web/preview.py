"""Read-only views over the population: a rule's preview, the R × F grid, a segment's load shape.

They change nothing, so a builder may call them on every keystroke:

* ``GET /rules/preview?expression=`` validates a rule exactly as ``POST
  /segments`` does (400 with kind, line, column and offset) and, when valid,
  evaluates it over the same population a static segment would be activated
  over: the size it would have and a sample of members.
* ``GET /insights/rfm-grid`` counts customers per (R score, F score) cell, with
  the named RFM segment most of them are in.
* ``GET /segments/{id}/shape`` is the members' mean consumption per quarter of
  the day (night 00-06, morning 06-12, daytime 12-18, evening 18-24), on
  weekdays and on weekend days, in kWh per day, estimated from the load-shape
  features the pipeline keeps per customer (``features.mean_daily_kwh`` times
  each quarter's share; weekend days scaled by ``weekday_weekend_ratio``).
  The features are decayed means, so this is the segment's recent typical day.
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

QUARTERS: tuple[tuple[str, str, str], ...] = (
    ("night", "00-06", "features.share_night"),
    ("morning", "06-12", "features.share_morning"),
    ("daytime", "12-18", "features.share_daytime"),
    ("evening", "18-24", "features.share_evening"),
)
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


@route("GET", "/segments/{id}/shape", summary="Members' typical day: kWh per quarter of the day, weekday and weekend",
       tag="segments", errors=(400, 404),
       response={"type": "object", "properties": {"quarters": {"type": "array"}, "with_features": {"type": "integer"}}})  # fmt: skip
async def shape(ctx: ApiContext, req: ApiRequest) -> Any:
    """Mean kWh per day in each quarter of the day over the members with load-shape features."""
    family, seg, _ = await require_segment(ctx, req.path["id"])
    pop = await load_population(ctx)
    mask = pop.mask(await member_set(ctx, family, seg))
    cols = pop.columns
    needed = ["features.mean_daily_kwh", "features.weekday_weekend_ratio", *(q[2] for q in QUARTERS)]
    if any(n not in cols for n in needed):
        return {"segment": f"{family}:{seg}", "members": int(mask.sum()), "with_features": 0, "quarters": []}
    table = np.column_stack([cols[n].astype(np.float64) for n in needed])[mask]
    table = table[~np.isnan(table).any(axis=1)]
    if not len(table):
        return {"segment": f"{family}:{seg}", "members": int(mask.sum()), "with_features": 0, "quarters": []}
    daily, ratio, shares = table[:, 0], table[:, 1], table[:, 2:]
    weekday = (daily[:, None] * shares).mean(axis=0)
    weekend = ((daily * ratio)[:, None] * shares).mean(axis=0)
    return {
        "segment": f"{family}:{seg}",
        "members": int(mask.sum()),
        "with_features": len(table),
        "mean_daily_kwh": round(float(daily.mean()), 4),
        "quarters": [{"quarter": name, "hours": hours, "weekday_kwh": round(float(wd), 4),
                      "weekend_kwh": round(float(we), 4)}
                     for (name, hours, _), wd, we in zip(QUARTERS, weekday, weekend, strict=True)],
    }  # fmt: skip
