"""The HTTP API of a live worker under fuzzed requests: bad requests get a 4xx, nothing gets a 500.

The worker is the one of ``tests/fuzz/conftest.py`` (it has consumed the
fuzz corpus, so there are customers, meters and RFM segments to answer
about). Hypothesis draws a route of the route table (or a path that is none),
a method, path parameters, query parameters and a body - valid-looking or
damaged: wrong types, huge numbers, unicode, far dates, deep nesting, bytes
that are not JSON - and a token, missing or wrong now and then:

- never a 5xx (one documented exception: ``POST /score`` answers 503
  ``model_not_ready`` to a *valid* request while no behaviour model is fitted);
- no token or a wrong one on an authenticated route: 401 ``unauthorized``;
- a body that is not JSON, or not a JSON object: 400; every error of a route
  is JSON ``{"error", "detail"}``;
- the worker is still healthy afterwards.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stream.web.routes import Route, all_routes
from tests.fuzz.conftest import TOKEN, FuzzRun
from tests.fuzz.payloads import (
    CUSTOMERS,
    FAR_TIMESTAMPS,
    HUGE_NUMBERS,
    KNOWN_METERS,
    WEIRD_STRINGS,
    nasty_values,
    one_in,
)

pytestmark = pytest.mark.integration

ROUTES = all_routes()
SEGMENT_IDS = ["rfm:lost", "rfm:promising", "rfm:hibernating", "rfm:new_customers", "rfm:champions", "behaviour:B1",
               "rule:fz", "rule:fz_lookalike", "champions", "rfm:", "zzz:x"]  # fmt: skip
NASTY_TEXT = st.one_of(
    st.sampled_from(WEIRD_STRINGS),
    st.sampled_from([str(t) for t in FAR_TIMESTAMPS]),
    st.sampled_from([repr(n) for n in HUGE_NUMBERS]),
    st.sampled_from(["²", "١٢", "-1", "0", "1e3", "99999999999999999999999", "9" * 5000, "1.5", "%", "%ff", ".."]),
    st.sampled_from(["0001-01-01", "9999-12-31", "2026-01-01", "2026-02-30", "+002026-01-01"]),
    st.text(max_size=20),
)
DATES = ["2026-01-01", "2026-01-07", "0001-01-01", "0001-01-03", "9999-12-31", "9999-12-28", "2026-13-01", "20260101"]
LIMITS = ["1", "10", "1000", "0", "-1", "1001", "²", "١٢", "1.5", "99999999999999999999", " 5", "+5", "0x10"]
#: valid-looking values per query parameter (a nasty one is drawn a third of the time)
QUERY: dict[str, list[str]] = {
    "family": ["rfm", "behaviour", "rule"], "limit": LIMITS, "offset": ["0", "5", "-3", "²", "9" * 30],
    "cursor": ["0", "17", "18446744073709551615", "18446744073709551616", "-1", "²"],
    "since": ["0", "2026-01-01T00:00:00Z", "1e308", "inf", "nan", "-1e308", "0001-01-01", "9999-12-31T23:59:59-23:59"],
    "query": ["C000", "C", ""], "region": ["North", "South", "Nowhere"], "segment": SEGMENT_IDS, "a": SEGMENT_IDS,
    "b": SEGMENT_IDS, "attributes": ["rfm.frequency,region", "nope", ",,"], "top": LIMITS, "from": DATES,
    "to": DATES, "state": ["poor", "good,fair", "poor,", "bad"],
}  # fmt: skip
RULES = st.one_of(
    st.sampled_from([
        'region == "North"', "rfm.total_spend > 100", "rfm.frequency >= 1 and not has_export", "clv > 1e999",
        'region = "North"', "unknown.attr > 1", "1 / 0 > 1", "__import__('os')", "(" * 3000 + "1" + ")" * 3000,
        "not " * 2000 + "has_export", "rfm.frequency > " + "9" * 5000, 'region in ["North", "South"]',
    ]),
    NASTY_TEXT,
)  # fmt: skip
BODIES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "SegmentCreate": {
        "id": st.sampled_from(["fz", "fz_1", "fz.2", "bad id", ""]), "name": st.sampled_from(["Fuzz", ""]),
        "expression": RULES, "members": st.lists(st.sampled_from(CUSTOMERS), max_size=3),
        "mode": st.sampled_from(["static", "dynamic"]), "description": st.just(""),
    },
    "ExpandRequest": {
        "features": st.lists(st.sampled_from(["rfm.frequency", "rfm.monetary_mean", "region", "nope"]), max_size=3),
        "within": st.sampled_from(SEGMENT_IDS), "method": st.sampled_from(["euclidean", "cosine", "manhattan"]),
        "max_share": st.floats(-1, 2), "min_score": st.floats(-1, 2), "limit": st.integers(-5, 2000),
        "save_as": st.fixed_dictionaries({"id": st.sampled_from(["fz_lookalike", "x y"]), "name": st.just("L")}),
    },
    "SuggestRequest": {
        "target": st.sampled_from(["rfm.monetary_mean", "clv", "churn_risk", "region", "rfm.segment", "nope"]),
        "influencers": st.lists(st.sampled_from(["region", "tariff", "rfm.frequency", "clv", "nope"]), max_size=4),
        "target_value": st.one_of(st.none(), st.sampled_from(["North", "champions", 1.5, True])),
        "max_depth": st.integers(0, 5), "min_leaf": st.one_of(st.none(), st.integers(-1, 10**6)),
        "min_lift_change": st.floats(-1, 10), "within": st.sampled_from(SEGMENT_IDS),
    },
    "ScoreRequest": {
        "features": st.dictionaries(st.sampled_from(["mean_daily_kwh", "features.peak_to_average", "nope"]),
                                    st.one_of(st.floats(-1e300, 1e300), st.sampled_from(HUGE_NUMBERS)), max_size=3),
        "customer_id": st.sampled_from([*CUSTOMERS, "C9", "x" * 200]),
    },
}  # fmt: skip


@st.composite
def json_body(draw: st.DrawFn, route: Route) -> bytes | None:
    """A request body: the route's model with a subset of fields (some damaged), or anything else."""
    kind = draw(st.sampled_from(["model"] * 5 + ["nasty", "bytes", "deep", "empty", "none"]))
    if kind == "none" or (route.body is None and kind == "model"):
        return None
    if kind == "empty":
        return b""
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "deep":
        return b"[" * 3000 + b"]" * 3000
    if kind == "nasty":
        return json.dumps(draw(nasty_values), allow_nan=True).encode("utf-8", "surrogatepass")
    assert route.body is not None
    fields = BODIES[route.body.__name__]
    chosen = draw(st.sets(st.sampled_from(sorted(fields)), max_size=len(fields)))
    body: dict[str, Any] = {}
    for name in sorted(chosen):
        body[name] = draw(nasty_values) if draw(one_in(6)) else draw(fields[name])
    if draw(one_in(10)):
        body["unexpected"] = 1
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


BY_KEY = {f"{r.method} {r.path}": r for r in ROUTES}
Request = tuple[str, str, bytes | None, str | None]


@st.composite
def requests(draw: st.DrawFn, route: Route) -> Request:
    """(method, path with query, body, token) of a request to ``route``: parameters and body fuzzed."""
    path = route.path
    if "{id}" in path:
        ids = [*SEGMENT_IDS, *CUSTOMERS, *KNOWN_METERS]
        value = draw(NASTY_TEXT) if draw(one_in(3)) else draw(st.sampled_from(ids))
        path = path.replace("{id}", quote(value.encode("utf-8", "surrogatepass"), safe=""))  # surrogates: not UTF-8
    query = {}
    for name in sorted(draw(st.sets(st.sampled_from([*(p.name for p in route.params), "x"])))):
        values = QUERY.get(name)
        query[name] = draw(NASTY_TEXT) if not values or draw(one_in(4)) else draw(st.sampled_from(values))
    if query:
        path += "?" + urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()}, quote_via=quote)
    token = draw(st.sampled_from([TOKEN] * 8 + [None, "wrong", ""]))
    body = draw(json_body(route)) if route.method == "POST" else None
    return route.method, path, body, token


def call(run: FuzzRun, method: str, path: str, body: bytes | None, token: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", run.worker.web_port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


API_FUZZ = settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("key", sorted(BY_KEY))
@API_FUZZ
@given(data=st.data())
def test_api_answers_every_request_without_a_server_error(fuzz_run: FuzzRun, key: str, data: st.DataObject) -> None:
    route = BY_KEY[key]
    method, path, body, token = data.draw(requests(route), label="request")
    status, payload = call(fuzz_run, method, path, body, token)
    what = f"{method} {path[:300]} body={(body or b'')[:300]!r} token={token!r} -> {status} {payload[:600]!r}"
    answer: Any = _json(payload) if status >= 400 else None
    if status >= 400 and not isinstance(answer, dict):
        # the HTTP server refused before any route ran: no route matched (an empty path parameter:
        # /segments/ is no segment id) or the request line is too long; never a server error
        assert status < 500, what
        event(f"{status} from the HTTP server")
        return
    event(f"{status}")
    if status >= 400:  # our dispatcher answered: a JSON error body for every error
        assert {"error", "detail"} <= set(answer), what
    if status >= 500:
        documented = route.path == "/score" and status == 503  # a valid request while no model is fitted
        assert documented and answer["error"] == "model_not_ready", what
    if route.auth and token != TOKEN:
        assert status == 401 and answer["error"] == "unauthorized", what
    elif route.body is not None and (body is None or not _json_object(body)):
        assert status in (400, 404), what  # 404: the route's segment does not exist (checked first)


@settings(API_FUZZ, max_examples=40)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
    path=st.sampled_from(["/nope", "/segments/a/b/c", "//segments", "/segments/%zz", "/customers/", "/score/x"])
    | st.sampled_from(sorted({r.path for r in ROUTES})),
    token=st.sampled_from([TOKEN, None]),
)
def test_unknown_paths_and_methods_are_4xx(fuzz_run: FuzzRun, method: str, path: str, token: str | None) -> None:
    if f"{method} {path}" in BY_KEY:
        return
    status, payload = call(fuzz_run, method, path.replace("{id}", "rfm:lost"), None, token)
    assert 400 <= status < 500 or (status == 200 and f"{method} {path.replace('{id}', 'x')}" in BY_KEY), (
        status,
        payload,
    )


def _json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _json_object(body: bytes) -> bool:
    """What the API's parser (orjson) takes for a JSON object."""
    return isinstance(_json(body), dict)


#: requests the fuzzer answered with a 500 before they were fixed (each is a 400 now)
FOUND: list[tuple[str, str, Any]] = [
    ("GET", "/meters/top?from=9999-12-31", None),  # OverflowError: a week after the last date
    ("GET", "/meters/top?to=0001-01-01", None),  # ... and a week before the first
    ("GET", "/meters/top?limit=%C2%B2", None),  # '²'.isdigit() is True, int('²') raises
    ("GET", "/segments/rfm:lost/history?limit=%C2%B2", None),
    ("GET", "/insights/differentiators?a=rfm:lost&top=%C2%B2", None),
    ("POST", "/segments", {"id": "deep", "name": "d", "mode": "static", "expression": "(" * 3000 + "1" + ")" * 3000}),
    ("POST", "/segments", {"id": "deep", "name": "d", "expression": "not " * 2000 + "has_export"}),  # RecursionError
]


@pytest.mark.parametrize(("method", "path", "body"), FOUND)
def test_requests_the_fuzzer_found_are_bad_requests(fuzz_run: FuzzRun, method: str, path: str, body: Any) -> None:
    status, payload = call(fuzz_run, method, path, None if body is None else orjson.dumps(body), TOKEN)
    assert status == 400, payload
    assert orjson.loads(payload)["error"] in ("invalid_parameter", "invalid_rule"), payload


def test_worker_healthy_after_the_api_fuzz(fuzz_run: FuzzRun) -> None:
    status, payload = call(fuzz_run, "GET", "/health", None, None)
    assert status == 200, payload
    assert fuzz_run.worker.proc.poll() is None
    log = fuzz_run.worker.log_tail(1_000_000)
    # a 500, a cut export, a crashed agent or pipeline (aiohttp logs the request lines it refuses as too long with
    # a traceback of its own: that is a 400, not ours)
    for symptom in ("API handler failed", "failed mid-stream", "Crashed", "batch handler failed", "timer part"):
        assert symptom not in log, log[max(0, log.find(symptom) - 500) : log.find(symptom) + 3000]
