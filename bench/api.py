"""API response times at 100 000 customers: members, export and expand (and the population read behind them).

Fills Redis directly with a synthetic projection - the same keys the
segmentation pipeline writes (``{ns}:cust:{id}`` with ``rfm``/``features``/
``seg:*`` in the stored format of :mod:`stream.state.customer_codec`, member sets, catalogue) - for N customers spread over 10 rfm and 8
behaviour segments, with a synthetic registry (region, tariff, one meter
each); no fleet is simulated. Then it serves the real handlers
(:mod:`stream.web`, same dispatch, auth and JSON as a worker) on an aiohttp
server and times HTTP calls:

* ``members``: one page of 1 000 (cursor), one offset page, and a full cursor walk of the largest segment;
* ``export.csv``: the largest segment streamed to the end (rows/s);
* ``expand``: cold (population read from Redis + CLV refit) and warm (population cached);
* ``GET /customers/{id}`` for reference.

Usage::

    .venv/bin/python -m bench.api                      # 100 000 customers, redis from METERSEG_REDIS_URL (db 15)
    .venv/bin/python -m bench.api --customers 20000 --redis-url redis://127.0.0.1:26379/15

The bench namespace (``bench-api-<random>``) is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import aiohttp
import numpy as np
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from meterseg.settings import Settings
from processors.features import LOAD_SHAPE_FEATURES
from stream.state.customer_codec import RFM_FIELD, encode_features, encode_rfm
from stream.state.keys import CustomerKeys
from stream.web.context import ApiContext, CustomerMeta, Directory
from stream.web.routes import Route, all_routes
from stream.web.server import _dispatch

RFM = ("champions", "loyal", "potential_loyalist", "new_customers", "promising", "need_attention",
       "about_to_sleep", "at_risk", "cant_lose", "hibernating")  # fmt: skip
REGIONS = ("North", "South", "East", "West", "Central")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class _Holder:
    def __init__(self, ctx: ApiContext) -> None:
        self.settings = ctx.settings
        self.ctx = ctx

    def get(self) -> ApiContext:
        return self.ctx


def synthetic(n: int, seed: int = 0) -> tuple[dict[str, CustomerMeta], list[tuple[str, dict[str, bytes]]]]:
    rng = np.random.default_rng(seed)
    ids = [f"C{i:07d}" for i in range(n)]
    rfm_seg = rng.choice(len(RFM), n, p=np.array([3, 2, 2, 1, 1, 1, 1, 2, 1, 3]) / 17)
    beh = rng.integers(0, 8, n)
    freq = rng.poisson(3, n)
    t_days = rng.integers(30, 400, n)
    rec = np.where(freq > 0, (rng.random(n) * t_days).astype(int) + 1, 0)
    rec = np.minimum(rec, t_days)
    money = rng.gamma(4, 15, n)
    meta: dict[str, CustomerMeta] = {}
    rows = []
    for i, cid in enumerate(ids):
        meta[cid] = CustomerMeta(REGIONS[i % 5], "prepaid" if i % 3 else "postpaid", bool(i % 4 == 0), (f"M{i:07d}",))
        spend = round(float(money[i] * (freq[i] + 1)), 2)
        first = NOW - timedelta(days=int(t_days[i]))
        rfm = {"customer_id": cid, "first_purchase": first.isoformat().replace("+00:00", "Z"),
               "last_purchase": (first + timedelta(days=int(rec[i]))).isoformat().replace("+00:00", "Z"),
               "frequency": int(freq[i]), "recency_days": int(rec[i]), "T_days": int(t_days[i]),
               "days_since_last": float(t_days[i] - rec[i]), "monetary_mean": spend / int(freq[i] + 1),
               "total_spend": spend, "n_purchases": int(freq[i] + 1),
               "n_purchase_days": int(freq[i] + 1), "n_viewed": 0, "n_processed": 0,
               "r_score": int(rng.integers(1, 6)), "f_score": int(rng.integers(1, 6)), "m_score": int(rng.integers(1, 6)),
               "segment": RFM[rfm_seg[i]], "segment_name": RFM[rfm_seg[i]].replace("_", " ").title()}  # fmt: skip
        feats = {n_: float(v) for n_, v in zip(LOAD_SHAPE_FEATURES, rng.random(len(LOAD_SHAPE_FEATURES)), strict=True)}
        feats["mean_daily_kwh"] = float(5 + 20 * rng.random() + 3 * beh[i])
        rows.append((cid, {RFM_FIELD: encode_rfm(rfm), **encode_features("2026-01-01", feats),
                           "seg:rfm": RFM[rfm_seg[i]].encode(), "seg:behaviour": f"B{beh[i] + 1}".encode()}))  # fmt: skip
    return meta, rows


async def fill(client: aioredis.Redis, ns: str, rows: list[tuple[str, dict[str, bytes]]]) -> None:
    keys = CustomerKeys(ns)  # the one-shard layout of a single server
    for start in range(0, len(rows), 10_000):
        pipe = client.pipeline(transaction=False)
        for cid, fields in rows[start : start + 10_000]:
            shard = keys.shard_of(cid)
            pipe.hset(keys.customer(cid), mapping=cast(Any, fields))
            pipe.sadd(keys.shard_members(shard, "rfm", fields["seg:rfm"].decode()), cid)
            pipe.sadd(keys.shard_members(shard, "behaviour", fields["seg:behaviour"].decode()), cid)
            pipe.sadd(keys.shard_members(shard, "rule", "everyone"), cid)
        await pipe.execute()
    catalogue = {f"rfm:{s}": orjson.dumps({"family": "rfm", "id": s, "name": s.replace("_", " ").title()}) for s in RFM}
    catalogue.update({f"behaviour:B{j}": orjson.dumps({"family": "behaviour", "id": f"B{j}", "name": f"Cluster {j}"})
                      for j in range(1, 9)})  # fmt: skip
    catalogue["rule:everyone"] = orjson.dumps({"family": "rule", "id": "everyone", "name": "Every customer"})
    await client.hset(f"{ns}:segments", mapping=catalogue)  # type: ignore[arg-type]


async def timed(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    async with session.request(method, url, **kw) as resp:
        body = await resp.read()
        assert resp.status == 200, (url, resp.status, body[:300])
    return time.perf_counter() - started, resp.status, body


async def run(n: int, redis_url: str, repeat: int) -> None:
    ns = f"bench-api-{uuid.uuid4().hex[:6]}"
    settings = Settings(app_id=ns, redis_url=redis_url, api_token="bench-token")
    client = aioredis.Redis.from_url(redis_url)
    print(f"filling {n:,} customers into {redis_url} (namespace {ns}) ...", flush=True)
    started = time.perf_counter()
    meta, rows = synthetic(n)
    await fill(client, ns, rows)
    print(f"  filled in {time.perf_counter() - started:.1f} s", flush=True)
    ctx = ApiContext(settings, client, Directory(static=meta), population_ttl_s=3600.0)
    holder: Any = _Holder(ctx)
    app = web.Application()
    by_path: dict[str, dict[str, Route]] = {}
    for r in all_routes():
        by_path.setdefault(r.path, {})[r.method] = r
    for path, methods in by_path.items():
        for method, r in methods.items():

            async def handle(request: web.Request, r: Route = r) -> web.StreamResponse:
                return await _dispatch(holder, r, request, dict(request.match_info))

            app.router.add_route(method, path, handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer bench-token"}
    try:
        async with aiohttp.ClientSession(headers=headers) as s:
            sizes = {seg: sum([await client.scard(k) for k in CustomerKeys(ns).members("rfm", seg)]) for seg in RFM}
            big = max(sizes, key=lambda k: sizes[k])
            seg = f"rfm:{big}"
            print(f"\nlargest segment {seg}: {sizes[big]:,} members of {n:,} customers\n")

            def med(xs: list[float]) -> str:
                return (
                    f"median {1e3 * statistics.median(xs):8.1f} ms  (min {1e3 * min(xs):.1f}, max {1e3 * max(xs):.1f})"
                )

            page = [(await timed(s, "GET", f"{base}/segments/{seg}/members?limit=1000"))[0] for _ in range(repeat)]
            print(f"members, one cursor page of 1000      {med(page)}")
            off = [(await timed(s, "GET", f"{base}/segments/{seg}/members?limit=1000&offset=20000"))[0]
                   for _ in range(repeat)]  # fmt: skip
            print(f"members, one offset page (sorted)     {med(off)}")
            walks = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                cursor: str | None = "0"
                seen = 0
                while cursor is not None:
                    _, _, body = await timed(s, "GET", f"{base}/segments/{seg}/members?limit=1000&cursor={cursor}")
                    page_body = orjson.loads(body)
                    seen += len(page_body["items"])
                    cursor = page_body["next_cursor"]
                walks.append(time.perf_counter() - t0)
            print(f"members, full cursor walk ({seen:,})   {med(walks)}")
            for label, target in ((seg, seg), ("rule:everyone", "rule:everyone")):
                exports = []
                for _ in range(repeat):
                    dt, _, body = await timed(s, "GET", f"{base}/segments/{target}/export.csv")
                    exports.append(dt)
                lines = body.count(b"\n") - 1
                print(f"export.csv {label} ({lines:,} rows, {len(body) / 1e6:.1f} MB)   {med(exports)}"
                      f"  = {lines / statistics.median(exports):,.0f} rows/s")  # fmt: skip
            walks = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                cursor = "0"
                seen = 0
                while cursor is not None:
                    _, _, body = await timed(
                        s, "GET", f"{base}/segments/rule:everyone/members?limit=1000&cursor={cursor}"
                    )
                    page_body = orjson.loads(body)
                    seen += len(page_body["items"])
                    cursor = page_body["next_cursor"]
                walks.append(time.perf_counter() - t0)
            print(f"members, full cursor walk of rule:everyone ({seen:,})   {med(walks)}")
            await client.delete(f"{ns}:clv:model")
            ctx._clv = None
            t0 = time.perf_counter()
            from stream.web.context import fit_clv, load_population

            pop = await load_population(ctx, fresh=True)
            print(f"population read + CLV refit           {1e3 * (time.perf_counter() - t0):8.1f} ms")
            t0 = time.perf_counter()
            fit_clv(pop.columns)
            print(f"CLV refit alone (10 000-customer sample) {1e3 * (time.perf_counter() - t0):8.1f} ms")
            ctx.invalidate()
            t0 = time.perf_counter()
            await load_population(ctx, fresh=True)
            print(f"population read (CLV model cached)    {1e3 * (time.perf_counter() - t0):8.1f} ms")
            ctx.invalidate()
            cold, _, body = await timed(s, "POST", f"{base}/segments/{seg}/expand", json={})
            found = orjson.loads(body)
            print(f"expand, cold (population read)        {1e3 * cold:8.1f} ms  found {found['found']:,} "
                  f"(cap {found['cap']:,}), bands {found['bands']}")  # fmt: skip
            warm = [(await timed(s, "POST", f"{base}/segments/{seg}/expand", json={}))[0] for _ in range(repeat)]
            print(f"expand, warm (population cached)      {med(warm)}")
            cust = [(await timed(s, "GET", f"{base}/customers/C0000042"))[0] for _ in range(repeat)]
            print(f"GET /customers/{{id}}                  {med(cust)}")
    finally:
        await runner.cleanup()
        cursor_ = 0
        while True:
            cursor_, keys = await client.scan(cursor_, match=f"{ns}:*", count=10_000)
            if keys:
                await client.delete(*keys)
            if cursor_ == 0:
                break
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--redis-url", default=None, help="default: METERSEG_REDIS_URL with database 15")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    url = args.redis_url or Settings().redis_url.rsplit("/", 1)[0] + "/15"
    asyncio.run(run(args.customers, url, args.repeat))


if __name__ == "__main__":
    main()
