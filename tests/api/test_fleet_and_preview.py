"""The read-only views the console uses (``/fleet/*``, ``/rules/preview``, ``/insights/rfm-grid``,
``/segments/{id}/shape``) against the session's running worker, checked against the API's other answers
and Redis read at about the same moment."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from tests.conftest import RunningEngine

pytestmark = pytest.mark.integration


def call(engine: RunningEngine, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = Request(engine.web_url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                  headers={"Authorization": f"Bearer {engine.settings.api_token}", "Content-Type": "application/json"})  # fmt: skip
    try:
        with urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except HTTPError as e:
        return e.code, json.loads(e.read())


def ok(engine: RunningEngine, path: str, method: str = "GET", body: Any = None) -> Any:
    status, payload = call(engine, method, path, body)
    assert status in (200, 201), (path, status, payload)
    return payload


def eventually(check: Callable[[], Any], tries: int = 6, pause_s: float = 1.0) -> Any:
    """``check()``'s result once it passes: the engine keeps running (windows close, customers age), so two
    reads a moment apart may differ; a comparison that keeps failing fails the test."""
    for _ in range(tries - 1):
        try:
            return check()
        except AssertionError:
            time.sleep(pause_s)
    return check()


def test_daily_consumption_is_the_sum_of_the_meters_daily_windows(running_engine: RunningEngine) -> None:
    def same_total() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        daily = ok(running_engine, "/fleet/daily")
        days = [d for d in daily["days"] if d["meters"]]
        assert days and daily["regions"]
        span = {"from": days[0]["day"], "to": days[-1]["day"], "limit": 1000}
        top = ok(running_engine, "/meters/top?" + urlencode(span))
        assert sum(d["kwh"] for d in days) == pytest.approx(sum(t["kwh"] for t in top["items"]), rel=1e-6)
        return daily, days

    daily, days = eventually(same_total)
    for d in days:
        assert d["kwh"] == pytest.approx(sum(r["kwh"] for r in d["by_region"].values()), abs=1e-2)
        assert d["meters"] == sum(r["meters"] for r in d["by_region"].values())
    region = daily["regions"][0]
    one = ok(
        running_engine, "/fleet/daily?" + urlencode({"region": region, "from": days[0]["day"], "to": days[-1]["day"]})
    )
    assert [d["kwh"] for d in one["days"]] == pytest.approx(
        [d["by_region"].get(region, {}).get("kwh", 0) for d in days], abs=1e-2
    )
    for bad in ({"region": "Atlantis"}, {"from": "2026-02-30"}, {"from": "2026-01-05", "to": "2026-01-01"},
                {"from": "2020-01-01", "to": "2026-01-01"}):  # fmt: skip
        status, payload = call(running_engine, "GET", "/fleet/daily?" + urlencode(bad))
        assert status == 400 and payload["error"] == "invalid_parameter", (bad, payload)


def test_fleet_meters_counts_agree_with_the_faulty_meters_view(running_engine: RunningEngine) -> None:
    fleet = ok(running_engine, "/fleet/meters?limit=1000")
    by_state = fleet["by_state"]
    assert fleet["meters"] == sum(by_state[s] for s in ("good", "fair", "poor")) == len(fleet["items"]) > 0
    assert by_state["poor"] == ok(running_engine, "/meters/faulty?state=poor&limit=1")["total"]
    assert sum(c["poor"] for c in fleet["by_region"].values()) == by_state["poor"]
    late = ok(running_engine, "/fleet/meters?reason=silent&limit=1000")
    assert late["total"] == by_state["late"] and all("silent" in m["reasons"] for m in late["items"])
    region = sorted(fleet["by_region"])[0]
    mine = ok(running_engine, "/fleet/meters?" + urlencode({"region": region, "limit": 1000}))
    assert mine["meters"] == sum(v for k, v in fleet["by_region"][region].items() if k in ("good", "fair", "poor"))
    assert {m["region"] for m in mine["items"]} == {region}
    status, payload = call(running_engine, "GET", "/fleet/meters?state=broken")
    assert status == 400 and payload["error"] == "invalid_parameter"


def test_rule_preview_validates_like_post_and_counts_like_a_static_segment(running_engine: RunningEngine) -> None:
    status, err = call(running_engine, "GET", "/rules/preview?" + urlencode({"expression": 'region = "North"'}))
    assert status == 400 and (err["kind"], err["line"], err["column"], err["offset"]) == (
        "unexpected_character",
        1,
        8,
        7,
    )
    status, unknown = call(running_engine, "GET", "/rules/preview?" + urlencode({"expression": "nope.attr > 1"}))
    assert status == 400 and unknown["kind"] == "unknown_attribute"
    assert call(running_engine, "GET", "/rules/preview")[0] == 400
    expression = 'region == "North" and rfm.frequency >= 1'
    preview = ok(running_engine, "/rules/preview?" + urlencode({"expression": expression, "limit": 1000}))
    sid = f"preview_{uuid.uuid4().hex[:8]}"
    made = ok(
        running_engine,
        "/segments",
        "POST",
        {"id": sid, "name": "preview check", "expression": expression, "mode": "static"},
    )
    try:
        assert preview["size"] == made["size"] > 0
        assert preview["sample"] == sorted(preview["sample"]) and len(preview["sample"]) == preview["size"]
    finally:
        ok(running_engine, f"/segments/rule:{sid}", "DELETE")


def test_rfm_grid_and_segment_shape(running_engine: RunningEngine) -> None:
    grid = ok(running_engine, "/insights/rfm-grid")
    assert grid["scored"] == sum(c["customers"] for c in grid["cells"]) > 0
    assert all(1 <= c["r"] <= 5 and 1 <= c["f"] <= 5 for c in grid["cells"])

    def champions_cells() -> None:  # the RFM map's cells, by majority (scores and segment are re-read together)
        cells = ok(running_engine, "/insights/rfm-grid")["cells"]
        assert all(c["segment"] == "Champions" for c in cells if c["r"] == 5 and c["f"] >= 4), cells

    eventually(champions_cells)
    # behaviour segments exist once the model is seeded (a week of profiles); the 3-day test engine may have none
    segments = ok(running_engine, "/segments?family=behaviour")["segments"] or ok(
        running_engine, "/segments?family=rfm")["segments"]
    seg = max(segments, key=lambda s: s["size"])
    shape = ok(running_engine, f"/segments/{seg['id']}/shape")
    assert 0 < shape["with_features"] <= shape["members"]
    # the pipeline stored every member's hourly shapes (a projection of an earlier version would lack them)
    assert shape["with_hourly_shape"] == shape["with_features"]
    assert [h["hour"] for h in shape["hours"]] == list(range(24))
    assert shape["hours"][0]["label"] == "00-01" and shape["hours"][23]["label"] == "23-24"
    weekday = sum(h["weekday_kwh"] for h in shape["hours"])
    weekend = sum(h["weekend_kwh"] for h in shape["hours"])
    assert weekday == pytest.approx(shape["weekday_kwh"], abs=1e-3) and weekend == pytest.approx(shape["weekend_kwh"], abs=1e-3)
    # five weekdays and two weekend days average the members' mean daily kWh
    assert (5 * weekday + 2 * weekend) / 7 == pytest.approx(shape["mean_daily_kwh"], rel=0.01)
    # not a flat day: the simulator's households use more in some hours than in others
    assert max(h["weekday_kwh"] for h in shape["hours"]) > 1.5 * min(h["weekday_kwh"] for h in shape["hours"])
    assert call(running_engine, "GET", "/segments/rfm:nope/shape")[0] == 404


def metric_by_region(engine: RunningEngine, name: str) -> dict[str, float]:
    """A counter per region from the worker's own ``/metrics`` (no scrape delay)."""
    with urlopen(engine.metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            region = labels.split('region="', 1)[1].split('"', 1)[0]
            out[region] = out.get(region, 0.0) + float(value)
    return out


def test_revenue_per_event_day_matches_the_regional_counters_and_follows_the_filters(
    running_engine: RunningEngine,
) -> None:
    def same_as_counters() -> dict[str, Any]:
        latest = ok(running_engine, "/fleet/revenue")
        assert latest["to"] is not None and latest["days"], latest
        everything = ok(running_engine, "/fleet/revenue?" + urlencode({"to": latest["to"], "from": _days_before(latest["to"], 365)}))
        counters = metric_by_region(running_engine, "meterseg_region_revenue_total")
        # every revenue the workers counted (each window once, corrections by their difference) is on some day
        assert everything["by_region"] == pytest.approx({r: v for r, v in counters.items() if v}, rel=1e-9, abs=1e-6)
        return everything

    everything = eventually(same_as_counters)
    days = [d for d in everything["days"] if d["revenue"]]
    assert everything["revenue"] == pytest.approx(sum(d["revenue"] for d in days)) and everything["revenue"] > 0
    # one day, one region: that day's amount for that region only
    day, region = days[-1]["day"], sorted(days[-1]["by_region"])[0]
    one = ok(running_engine, "/fleet/revenue?" + urlencode({"from": day, "to": day, "region": region}))
    assert [d["day"] for d in one["days"]] == [day] and set(one["by_region"]) == {region}
    assert one["revenue"] == pytest.approx(days[-1]["by_region"][region], rel=1e-9)
    assert one["revenue"] < everything["revenue"]
    for query, error in (({"from": day, "to": _days_before(day, 1)}, "from must not be after to"),
                         ({"region": "Atlantis"}, "unknown region"), ({"to": "yesterday"}, "date"),
                         ({"from": "2020-01-01", "to": "2022-01-01"}, "at most")):  # fmt: skip
        status, payload = call(running_engine, "GET", "/fleet/revenue?" + urlencode(query))
        assert status == 400 and error in payload["detail"], (query, payload)


def _days_before(day: str, n: int) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) - timedelta(days=n)).isoformat()
