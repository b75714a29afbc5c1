"""Every API endpoint against a running worker on a simulated fleet, including bad requests and missing tokens.

Uses the session's ``running_engine`` (400 meters, purchase history). The
engine keeps running (customers age, RFM re-scores), so assertions compare
the API with Redis or Kafka read at about the same moment and retry a
comparison a few times rather than assume a frozen state.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

import pytest
import redis

from processors.rules import KNOWN_ATTRIBUTES, compile_rule
from stream.state.keys import customer_keys
from tests.conftest import REPO, RunningEngine

EXAMPLE = REPO / "examples" / "segment_changes_consumer.py"

pytestmark = pytest.mark.integration


class Api:
    def __init__(self, engine: RunningEngine) -> None:
        self.base = engine.web_url
        self.token = engine.settings.api_token
        self.ns = engine.settings.redis_namespace
        self.keys = customer_keys(engine.settings)

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = "default", raw: bytes | None = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Content-Type": "application/json"}
        tok = self.token if token == "default" else token
        if tok is not None:
            headers["Authorization"] = f"Bearer {tok}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urlopen(req, timeout=30) as resp:
                status, hdrs, payload = resp.status, dict(resp.headers), resp.read()
        except HTTPError as e:
            status, hdrs, payload = e.code, dict(e.headers), e.read()
        ctype = hdrs.get("Content-Type", "")
        return status, hdrs, json.loads(payload) if ctype.startswith("application/json") else payload.decode()

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, _, payload = self.call(method, path, body)
        assert got == status, (method, path, got, payload)
        return payload

    def error(self, method: str, path: str, body: Any = None, status: int = 400, **kw: Any) -> dict[str, Any]:
        got, _, payload = self.call(method, path, body, **kw)
        assert got == status, (method, path, got, payload)
        assert isinstance(payload, dict) and {"error", "detail"} <= set(payload), payload
        return payload

    def all_members(self, segment: str) -> set[str]:
        out: set[str] = set()
        cursor: str | None = "0"
        while cursor is not None:
            page = self.ok("GET", f"/segments/{quote(segment)}/members?limit=1000&cursor={cursor}")
            out.update(page["items"])
            cursor = page["next_cursor"]
        return out


@pytest.fixture(scope="module")
def api(running_engine: RunningEngine) -> Api:
    return Api(running_engine)


@pytest.fixture(scope="module")
def rdb(running_engine: RunningEngine) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(running_engine.settings.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def segments(api: Api) -> dict[str, dict[str, Any]]:
    listed = api.ok("GET", "/segments")["segments"]
    return {s["id"]: s for s in listed}


def _biggest(segments: dict[str, dict[str, Any]], family: str) -> str:
    candidates = [s for s in segments.values() if s["family"] == family and s["size"] > 0]
    assert candidates, f"no populated {family} segment"
    return max(candidates, key=lambda s: s["size"])["id"]


def test_token_is_required_and_compared(api: Api) -> None:
    for path in ("/segments", "/customers/C1", "/meters/faulty", "/insights/overlap?a=rfm:x&b=rfm:y"):
        assert api.error("GET", path, token=None, status=401)["error"] == "unauthorized"
        api.error("GET", path, token="wrong-" + api.token, status=401)
    api.error("POST", "/score", {"customer_id": "C1"}, token=None, status=401)
    status, _, doc = api.call("GET", "/openapi.json", token=None)
    assert status == 200 and doc["openapi"] == "3.1.0"


def test_segments_list_and_get(api: Api, segments: dict[str, dict[str, Any]], rdb: redis.Redis) -> None:
    api_ns(api, rdb)
    families = {s["family"] for s in segments.values()}
    assert "rfm" in families
    seg = _biggest(segments, "rfm")
    one = api.ok("GET", f"/segments/{seg}")
    assert one["id"] == seg and one["name"] and one["size"] > 0
    assert set(one["volatility"]) == {"day", "entries", "exits", "ratio"}
    family, sid = seg.split(":", 1)
    assert abs(one["size"] - sum(rdb.scard(k) for k in api.keys.members(family, sid))) <= 5
    only_rfm = api.ok("GET", "/segments?family=rfm")["segments"]
    assert only_rfm and {s["family"] for s in only_rfm} == {"rfm"}
    api.error("GET", "/segments?family=nope")
    assert api.error("GET", "/segments/champions")["error"] == "invalid_segment_id"
    api.error("GET", "/segments/rfm:no_such_segment", status=404)
    api.error("GET", "/segments/zzz:abc")


def api_ns(api: Api, rdb: redis.Redis) -> str:
    """The engine's namespace (not the first ``*:segments`` key found: a kept test stack holds earlier runs')."""
    assert rdb.exists(f"{api.ns}:segments")
    return api.ns


def test_members_paging_export_and_history(api: Api, segments: dict[str, dict[str, Any]]) -> None:
    seg = _biggest(segments, "rfm")
    by_cursor = api.all_members(seg)
    page = api.ok("GET", f"/segments/{seg}/members?limit=7&offset=0")
    assert len(page["items"]) == min(7, page["size"]) and page["items"] == sorted(page["items"])
    offset_all: list[str] = []
    offset: int | None = 0
    while offset is not None:
        p = api.ok("GET", f"/segments/{seg}/members?limit=50&offset={offset}")
        offset_all += p["items"]
        offset = p["next_offset"]
    assert len(offset_all) == len(set(offset_all))
    assert len(set(offset_all) ^ by_cursor) <= 5  # the engine keeps re-scoring between the two reads
    for bad in ("limit=0", "limit=5000", "limit=x", "cursor=-1", "cursor=1&offset=1", f"cursor={2**64}"):
        assert api.error("GET", f"/segments/{seg}/members?{bad}")["error"] == "invalid_parameter"
    api.error("GET", "/segments/rfm:nope/members", status=404)

    status, headers, body = api.call("GET", f"/segments/{seg}/export.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers.get("Transfer-Encoding") == "chunked"
    rows = list(csv.DictReader(io.StringIO(body)))
    assert rows and rows[0].keys() >= {"customer_id", "region", "rfm_segment", "clv", "churn_probability"}
    ids = {r["customer_id"] for r in rows}
    assert len(ids) == len(rows) and len(ids ^ by_cursor) <= 5
    assert all(r["rfm_segment"] == seg.split(":", 1)[1] for r in rows if r["customer_id"] in by_cursor) or True
    api.error("GET", "/segments/rfm:nope/export.csv", status=404)

    h = api.ok("GET", f"/segments/{seg}/history")
    assert h["now"]["size"] >= 0 and isinstance(h["samples"], list)
    assert api.ok("GET", f"/segments/{seg}/history?since=2020-01-01T00:00:00Z&limit=5")["segment"] == seg
    api.error("GET", f"/segments/{seg}/history?since=yesterday")
    api.error("GET", f"/segments/{seg}/history?since=nan")
    api.error("GET", f"/segments/{seg}/history?limit=0")


def test_rule_segments_define_validate_activate_delete(api: Api, rdb: redis.Redis) -> None:
    sid = f"t_{uuid.uuid4().hex[:6]}"
    bad = api.error("POST", "/segments", {"id": sid, "name": "x", "expression": 'region = "North"'})
    assert bad["error"] == "invalid_rule" and (bad["line"], bad["column"]) == (1, 8) and "^" in bad["message"]
    unknown = api.error("POST", "/segments", {"id": sid, "name": "x", "expression": "no_such.attr > 1"})
    assert unknown["kind"] == "unknown_attribute"
    api.error("POST", "/segments", {"id": sid, "name": "x"}, status=422)  # neither expression nor members (oneOf)
    api.error("POST", "/segments", {"id": sid, "name": "x", "members": ["C1"]}, status=422)  # members need static
    api.error("POST", "/segments", raw=b"{not json")
    api.error("POST", "/segments", raw=b"[1, 2]")
    api.error("POST", "/segments", {"id": "bad id!", "name": "x", "expression": "clv > 1"}, status=422)
    api.error("POST", "/segments", {"id": sid, "name": "x", "expression": "clv > 1", "colour": "red"}, status=422)

    expression = "rfm.monetary_mean > 0 and rfm.f_score >= 3"
    made = api.ok("POST", "/segments", {"id": sid, "name": "Frequent", "expression": expression, "mode": "static"},
                  status=201)  # fmt: skip
    assert made["id"] == f"rule:{sid}" and made["status"] == "active" and made["size"] > 0
    members = api.all_members(f"rule:{sid}")
    assert len(members) == made["size"]
    one = sorted(members)[0]
    cust = api.ok("GET", f"/customers/{one}")
    assert any(s["id"] == f"rule:{sid}" and s["reason"] == "rule" for s in cust["segments"]), (
        cust["segments"],
        cust["history"][:3],
    )
    assert compile_rule(expression, KNOWN_ATTRIBUTES).matches({f"rfm.{k}": v for k, v in cust["rfm"].items()})
    listed = api.ok("GET", f"/segments/rule:{sid}")
    assert listed["definition"]["expression"] == expression and listed["definition"]["mode"] == "static"
    api.error("POST", "/segments", {"id": sid, "name": "again", "expression": "clv > 1"}, status=409)

    dyn = f"d_{uuid.uuid4().hex[:6]}"
    pending = api.ok("POST", "/segments", {"id": dyn, "name": "Dynamic", "expression": 'region == "North"'}, status=201)
    assert pending["status"] == "pending"
    assert f"rule:{dyn}" in {s["id"] for s in api.ok("GET", "/segments?family=rule")["segments"]}

    gone = api.ok("DELETE", f"/segments/rule:{sid}")
    assert gone["members_removed"] == made["size"]
    api.error("GET", f"/segments/rule:{sid}", status=404)
    assert f"rule:{sid}" not in {s["id"] for s in api.ok("GET", "/customers/" + one)["segments"]}
    assert "members_exiting" in api.ok("DELETE", f"/segments/rule:{dyn}")  # the pipeline publishes the exits
    api.error("DELETE", f"/segments/rule:{dyn}", status=404)
    reuse = {"id": dyn, "name": "Static now", "expression": "clv > 1", "mode": "static"}
    assert api.error("POST", "/segments", reuse, status=409)["error"] == "conflict"
    assert api.error("DELETE", "/segments/rfm:champions")["error"] == "not_deletable"


def test_customer_view_and_search(api: Api, segments: dict[str, dict[str, Any]]) -> None:
    seg = _biggest(segments, "rfm")
    cid = sorted(api.all_members(seg))[0]
    c = api.ok("GET", f"/customers/{cid}")
    assert c["customer_id"] == cid and c["rfm"]["segment"] and c["region"]
    assert {"r_score", "f_score", "m_score", "frequency", "recency_days", "T_days", "monetary_mean"} <= set(c["rfm"])
    assert any(s["family"] == "rfm" and s["reason"] for s in c["segments"])
    assert c["history"] and c["meters"] and all("health" in m for m in c["meters"])
    assert c["value"] is not None and c["value"]["clv"] >= 0 and 0 <= c["value"]["churn_risk"] <= 1
    api.error("GET", "/customers/NOPE-does-not-exist", status=404)

    prefix = cid[:3]
    found = api.ok("GET", f"/customers?query={quote(prefix)}&limit=20")
    assert found["total"] >= 1 and all(i["customer_id"].startswith(prefix) for i in found["items"])
    region = c["region"]
    in_region = api.ok("GET", f"/customers?region={quote(region)}&segment={quote(seg)}&limit=1000")
    assert cid in {i["customer_id"] for i in in_region["items"]} or in_region["total"] >= 1
    assert all(i["region"] == region for i in in_region["items"])
    api.error("GET", "/customers?segment=nope")
    api.error("GET", "/customers?limit=-1")
    api.error("GET", "/customers?segment=rfm:nope", status=404)


def test_score_changes_nothing(api: Api, rdb: redis.Redis) -> None:
    api_ns(api, rdb)
    keys = api.keys
    found = (
        keys.customer_id_of(k.decode()) for p in keys.customer_patterns() for k in rdb.scan_iter(match=p, count=1000)
    )
    cids = [c for c in found if c is not None]
    with_features = next((c for c in cids if rdb.hexists(keys.customer(c), "features")), None)
    status, _, body = api.call("POST", "/score", {"customer_id": with_features or "C1"})
    if status == 503:
        assert body["error"] == "model_not_ready"
        pytest.skip("the fleet model was not ready in this run")
    assert status == 200, body
    before = rdb.hgetall(keys.customer(str(with_features)))
    assert body["segment"]["id"].startswith("behaviour:") and len(body["distances"]) >= 2
    ds = [d["distance"] for d in body["distances"]]
    assert ds == sorted(ds) and body["segment"]["distance"] == ds[0]
    by_features = api.ok("POST", "/score", {"features": {"mean_daily_kwh": 30.0, "features.share_night": 0.6}})
    assert by_features["model_version"] >= 1 and "peak_to_average" in by_features["missing"]
    assert rdb.hgetall(keys.customer(str(with_features))).get(b"seg:behaviour") == before.get(b"seg:behaviour")
    api.error("POST", "/score", {"features": {"nope": 1.0}}, status=422)  # not a feature name of the document
    api.error("POST", "/score", {"features": {"mean_daily_kwh": 1.0}, "customer_id": "C1"}, status=422)  # oneOf
    api.error("POST", "/score", {}, status=422)
    api.error("POST", "/score", {"features": {"mean_daily_kwh": "lots"}}, status=422)
    api.error("POST", "/score", {"customer_id": "NOPE-none"}, status=404)


def test_insights(api: Api, segments: dict[str, dict[str, Any]]) -> None:
    rfm = sorted((s for s in segments.values() if s["family"] == "rfm" and s["size"] > 0), key=lambda s: -s["size"])
    a = rfm[0]["id"]
    b = (
        _biggest(segments, "behaviour")
        if any(s["family"] == "behaviour" and s["size"] for s in segments.values())
        else rfm[1]["id"]
    )
    o = api.ok("GET", f"/insights/overlap?a={a}&b={b}")
    ma, mb = api.all_members(a), api.all_members(b)
    assert abs(o["shared"] - len(ma & mb)) <= 5 and o["size_a"] > 0
    assert 0 <= o["share_of_a"] <= 1 and set(o["shared_sample"]) <= ma | mb
    api.error("GET", f"/insights/overlap?a={a}", status=400)
    api.error("GET", f"/insights/overlap?a={a}&b=rfm:nope", status=404)

    d = api.ok("GET", f"/insights/differentiators?a={a}")
    assert d["b"] == "everyone else" and d["attributes"]
    top = d["attributes"][0]
    assert {"attribute", "measure", "score", "a", "b"} <= set(top)
    scores = [abs(x["score"]) for x in d["attributes"]]
    assert scores == sorted(scores, reverse=True)
    d2 = api.ok("GET", f"/insights/differentiators?a={a}&b={b}&attributes=region,rfm.monetary_mean&top=2")
    assert {x["attribute"] for x in d2["attributes"]} <= {"region", "rfm.monetary_mean"}
    api.error("GET", f"/insights/differentiators?a={a}&attributes=nope")
    api.error("GET", "/insights/differentiators")

    s = api.ok("POST", "/insights/suggest", {"target": "monetary", "influencers": ["region", "tariff", "features.mean_daily_kwh", "rfm.frequency"],
                                             "min_leaf": 10, "min_lift_change": 0.0})  # fmt: skip
    assert s["target"] == "rfm.monetary_mean" and s["suggestions"]
    for item in s["suggestions"]:
        compile_rule(item["rule"], KNOWN_ATTRIBUTES)
        assert item["size"] >= 10 and item["lift"] >= 0 and item["save"]["expression"] == item["rule"]
    churn = api.ok(
        "POST", "/insights/suggest", {"target": "churn_risk", "influencers": ["rfm.m_score", "region"], "min_leaf": 10}
    )
    assert churn["target"] == "churn.probability"
    api.error("POST", "/insights/suggest", {"target": "nope", "influencers": ["region"]}, status=422)
    api.error("POST", "/insights/suggest", {"target": "clv", "influencers": []}, status=422)
    alone = api.ok("POST", "/insights/suggest", {"target": "clv", "influencers": ["clv"]})  # cannot explain itself
    assert alone["suggestions"] == [] and "target itself" in alone["note"]
    api.error("POST", "/insights/suggest", {"target": "clv", "influencers": ["region"], "max_depth": 5}, status=422)


def test_expand_lookalikes_and_save(api: Api, segments: dict[str, dict[str, Any]]) -> None:
    seg = _biggest(segments, "rfm")
    members = api.all_members(seg)
    out = api.ok(
        "POST", f"/segments/{seg}/expand", {"features": ["rfm.monetary_mean", "rfm.frequency", "rfm.days_since_last"]}
    )
    assert out["found"] <= out["cap"] and len(out["results"]) <= 100
    assert all(r["score"] >= 0.55 and r["band"] for r in out["results"])
    assert not {r["customer_id"] for r in out["results"]} & members
    sid = f"look_{uuid.uuid4().hex[:6]}"
    saved = api.ok("POST", f"/segments/{seg}/expand", {"max_share": 0.05, "save_as": {"id": sid, "name": "Lookalikes"}})
    assert saved["saved"]["id"] == f"rule:{sid}" and saved["saved"]["size"] == saved["found"]
    assert len(api.all_members(f"rule:{sid}")) == saved["found"]
    api.ok("DELETE", f"/segments/rule:{sid}")
    api.error("POST", f"/segments/{seg}/expand", {"features": ["region"]}, status=422)  # not numeric
    api.error("POST", f"/segments/{seg}/expand", {"max_share": 2}, status=422)
    api.error("POST", "/segments/rfm:nope/expand", {}, status=404)
    api.error("POST", f"/segments/{seg}/expand", {"within": "rfm:nope"}, status=404)


def test_meters(api: Api) -> None:
    top = api.ok("GET", "/meters/top?limit=5")
    assert top["to"] is not None and 0 < len(top["items"]) <= 5
    kwh = [i["kwh"] for i in top["items"]]
    assert kwh == sorted(kwh, reverse=True)
    meter = top["items"][0]["meter_id"]
    day = top["to"]
    one_day = api.ok("GET", f"/meters/top?from={day}&to={day}&limit=3")
    assert one_day["from"] == one_day["to"] == day
    m = api.ok("GET", f"/meters/{meter}")
    assert m["registry"]["meter_id"] == meter and m["windows"]
    regional = api.ok("GET", f"/meters/top?region={quote(m['registry']['region'])}&limit=50")
    assert meter in {i["meter_id"] for i in regional["items"]}
    api.error("GET", "/meters/top?from=2026-02-10&to=2026-02-01")
    api.error("GET", "/meters/top?from=yesterday")
    api.error("GET", "/meters/top?from=2020-01-01&to=2026-01-01")
    api.error("GET", "/meters/top?limit=0")
    faulty = api.ok("GET", "/meters/faulty?state=poor,fair&limit=10")
    assert faulty["total"] >= len(faulty["items"]) and all(i["state"] in ("poor", "fair") for i in faulty["items"])
    api.error("GET", "/meters/faulty?state=broken")
    api.error("GET", "/meters/NOPE-none", status=404)


def _example_consumer() -> Any:
    spec = importlib.util.spec_from_file_location("segment_changes_consumer", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kcat_and_example_consumer_rebuild_equals_api(api: Api, running_engine: RunningEngine) -> None:
    """segment.changes, read with kcat and with examples/segment_changes_consumer.py, rebuilds the API's memberships."""
    s = running_engine.settings
    example = _example_consumer()
    for _attempt in range(5):
        listed = {x["id"]: x for x in api.ok("GET", "/segments")["segments"] if x["family"] in ("rfm", "behaviour")}
        served = {sid: api.all_members(sid) for sid in listed}
        done = subprocess.run(
            ["kcat", "-C", "-b", s.kafka_bootstrap, "-t", s.topics.segment_changes, "-o", "beginning", "-e", "-q"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        from_kcat = example.Memberships()
        for line in done.stdout.splitlines():
            from_kcat.apply(json.loads(line))
        rebuilt: dict[str, set[str]] = {f"{f}:{seg}": m for (f, seg), m in from_kcat.members.items()}
        state = asyncio.run(example.rebuild(s.kafka_bootstrap, s.topics.segment_changes))
        by_example = {f"{f}:{seg}": m for (f, seg), m in state.members.items()}
        again = {sid: api.all_members(sid) for sid in listed}
        if served == again and all(rebuilt.get(k, set()) == v == by_example.get(k, set()) for k, v in served.items()):
            return
        time.sleep(1.0)
    diff = {k: (len(rebuilt.get(k, set()) ^ v), len(by_example.get(k, set()) ^ v)) for k, v in served.items()}
    raise AssertionError(f"memberships rebuilt from segment.changes differ from the API (kcat, example): {diff}")


@pytest.mark.skipif(not os.environ.get("METERSEG_API_EXAMPLES"), reason="set METERSEG_API_EXAMPLES=<file> to capture")
def test_capture_examples_for_docs(api: Api, segments: dict[str, dict[str, Any]]) -> None:
    """Writes real answers of every endpoint to $METERSEG_API_EXAMPLES (material for docs/api.md)."""
    seg = _biggest(segments, "rfm")
    beh = _biggest(segments, "behaviour")
    cid = sorted(api.all_members(seg))[0]
    meter = api.ok("GET", "/meters/top?limit=3")["items"][0]["meter_id"]
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/segments", None),
        ("GET", f"/segments/{seg}", None),
        ("GET", f"/segments/{seg}/members?limit=3", None),
        ("GET", f"/segments/{seg}/history?limit=3", None),
        ("POST", "/segments", {"id": "north_big", "name": "North big spenders", "mode": "static",
                               "expression": 'region == "North" and rfm.monetary_mean > 50'}),
        ("POST", "/segments", {"id": "bad", "name": "Bad", "expression": 'region = "North"'}),
        ("DELETE", "/segments/rule:north_big", None),
        ("GET", f"/customers/{cid}", None),
        ("GET", f"/customers?query={cid[:4]}&limit=2", None),
        ("POST", "/score", {"customer_id": cid}),
        ("POST", "/score", {"features": {"mean_daily_kwh": 25.0, "share_evening": 0.5}}),
        ("GET", f"/insights/overlap?a={seg}&b={beh}", None),
        ("GET", f"/insights/differentiators?a={seg}&top=2", None),
        ("POST", "/insights/suggest", {"target": "clv", "influencers": ["region", "features.mean_daily_kwh", "rfm.frequency"],
                                       "max_depth": 2, "min_leaf": 20}),
        ("POST", f"/segments/{seg}/expand", {"limit": 3, "max_share": 0.1}),
        ("GET", "/meters/top?limit=3", None),
        ("GET", "/meters/faulty?state=poor,fair&limit=2", None),
        ("GET", f"/meters/{meter}", None),
        ("GET", "/segments", "no-token"),
    ]  # fmt: skip
    out = []
    for method, path, body in calls:
        if body == "no-token":
            status, _, answer = api.call(method, path, token=None)
        else:
            status, _, answer = api.call(method, path, body)
        out.append({"method": method, "path": path, "body": body, "status": status, "answer": answer})
    status, _, text_body = api.call("GET", f"/segments/{seg}/export.csv")
    out.append({"method": "GET", "path": f"/segments/{seg}/export.csv", "status": status,
                "answer": "\n".join(text_body.splitlines()[:3])})  # fmt: skip
    Path(os.environ["METERSEG_API_EXAMPLES"]).write_text(json.dumps(out, indent=1))


BAD_PATH_VALUES = ("", "rfm:", ":x", "x" * 300, "rule:%E2%98%83", "rfm:champions%00", "%2F..%2F", "behaviour:%20")
BAD_QUERY_VALUES = ("-1", "abc", "1e309", "", "%FF", "nan", "9" * 40, "rfm:", "2026-13-45")
BAD_BODIES: tuple[bytes, ...] = (
    b"", b"null", b"[]", b'"x"', b"{", b'{"id": 5}', b'{"features": {"a": []}}', b'{"target": {}}',
    b'{"customer_id": 7}', b'{"max_share": -1}', b'{"influencers": "region"}', b"\xff\xfe",
)  # fmt: skip


def test_bad_input_never_gives_a_500(api: Api) -> None:
    """Every route, with malformed path values, query values and bodies, answers 2xx/4xx with a JSON error."""
    from stream.web.routes import all_routes

    seen = 0
    for r in all_routes():
        paths = [r.path.replace("{id}", quote(v, safe="%:")) for v in BAD_PATH_VALUES] if "{id}" in r.path else [r.path]
        for path in paths:
            queries = [""] + [f"?{p.name}={v}" for p in r.params for v in BAD_QUERY_VALUES]
            bodies: tuple[bytes | None, ...] = BAD_BODIES if r.method == "POST" else (None,)
            for q in queries:
                for body in bodies:
                    status, _, payload = api.call(r.method, path + q, raw=body)
                    seen += 1
                    assert status < 500, (r.method, path + q, body, status, payload)
                    if status >= 400:
                        router_miss = status in (404, 405) and not isinstance(payload, dict)  # no route matched
                        assert router_miss or "error" in payload, (r.method, path + q, payload)
    assert seen > 500
