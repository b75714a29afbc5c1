"""Cost of the segmentation pipeline's 1 s tick (RFM rescore) and gauges, before and after issue 16 finding 8.

Before: every tick re-scored every customer of the partition (and the gauges counted every customer).
After: a tick scores only the customers whose scores can have changed (``processors.rfm.index``); the
gauges read counts kept as records change. Both are measured in the same run on the same state: "before"
forces a full rescore (``index.full``, what the old code did on every tick), "after" is the code as it runs.

Scenarios, each the median CPU seconds (``time.process_time``) of ``--runs`` ticks:

* idle tick: no purchase, the same population, one second of event time later;
* tick after one purchase (a random customer buys);
* tick after an exchange: the peers' population changed (``--peer-buys`` purchases elsewhere);
* tick one hour of event time later (customers cross the lost horizon).

Usage::

    .venv/bin/python bench/rescore_tick.py [--customers 50000] [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson

from processors.columns import RawMessage
from processors.rfm import RfmSketches
from processors.segmentation import PartitionSegmentation, SegmentationConfig

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def purchases(n_customers: int, rng: np.random.Generator, start: int = 0) -> list[RawMessage]:
    """A year of purchases: 1-12 per customer (geometric), log-normal amounts."""
    msgs = []
    counts = np.minimum(rng.geometric(0.35, n_customers), 12)
    i = start
    for c, k in enumerate(counts.tolist()):
        for day in sorted(rng.integers(0, 365, k).tolist()):
            ts = (T0 + timedelta(days=int(day), seconds=int(rng.integers(0, 86_400)))).strftime("%Y-%m-%dT%H:%M:%SZ")
            value = orjson.dumps({"event_id": f"e{i}", "customer_id": f"C{c}", "ts": ts, "event_type": "PURCHASED",
                                  "amount": round(float(rng.lognormal(3.5, 0.8)), 2)})  # fmt: skip
            msgs.append(RawMessage(value, "customer.purchases", 0, i))
            i += 1
    return msgs


def peers(n: int, rng: np.random.Generator) -> RfmSketches:
    """Another three partitions' population (n customers each), as the exchange brings it."""
    sk = RfmSketches.empty()
    for _ in range(3 * n):
        last = (T0 + timedelta(days=float(rng.uniform(0, 365)))).timestamp()
        sk.add((last, float(rng.geometric(0.35) - 1), float(rng.lognormal(3.5, 0.8))), 1)
    return sk


def cpu(fn: Callable[[], object]) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--peer-buys", type=int, default=50, help="purchases elsewhere between two exchanges")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    seg = PartitionSegmentation(SegmentationConfig())
    msgs = purchases(args.customers, rng)
    started = time.perf_counter()
    for i in range(0, len(msgs), 5000):
        seg.process((msgs[i : i + 5000], []))
    population = peers(args.customers, rng)
    seg.set_population(population)
    now = (T0 + timedelta(days=366)).timestamp()
    seg.rescore(caught_up=False, now=now)
    print(f"state: {len(seg.rfm.customers):,} customers, {len(msgs):,} purchases, peers {population.n:,} customers "
          f"(built in {time.perf_counter() - started:.0f} s)")  # fmt: skip
    n_event = len(msgs)

    def tick(full: bool, advance_s: float = 1.0) -> float:
        nonlocal now
        now += advance_s
        if full:
            seg.rfm.index.full = True  # what every tick did before: score everyone
        return cpu(lambda: seg.rescore(caught_up=False, now=now))

    def buy() -> None:
        nonlocal n_event
        c = int(rng.integers(0, args.customers))
        ts = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        value = orjson.dumps({"event_id": f"x{n_event}", "customer_id": f"C{c}", "ts": ts, "event_type": "PURCHASED",
                              "amount": 30.0})  # fmt: skip
        seg.process(([RawMessage(value, "customer.purchases", 0, n_event)], []))
        n_event += 1

    def exchange() -> None:
        for _ in range(args.peer_buys):  # customers elsewhere bought since the last exchange
            last = now - float(rng.uniform(0, 86_400 * 200))
            population.add((last, float(rng.geometric(0.35) - 1), float(rng.lognormal(3.5, 0.8))), -1)
            population.add((now, float(rng.geometric(0.35)), float(rng.lognormal(3.5, 0.8))), 1)
        seg.set_population(RfmSketches.restore(population.snapshot()))

    scenarios: dict[str, tuple[Callable[[], None] | None, float]] = {
        "idle tick": (None, 1.0),
        "tick after one purchase": (buy, 1.0),
        f"tick after an exchange ({args.peer_buys} purchases elsewhere)": (exchange, 1.0),
        "tick one hour of event time later": (None, 3600.0),
    }
    print(f"median CPU seconds of {args.runs} ticks at {args.customers:,} customers (before: full rescore, "
          "as every tick did; after: incremental)")
    for name, (before_tick, advance) in scenarios.items():
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.runs):
            for full in (True, False):
                if before_tick is not None:
                    before_tick()
                times[full].append(tick(full, advance))
        b, a = statistics.median(times[True]), statistics.median(times[False])
        print(f"  {name:<52} before {b:.4f} s   after {a:.6f} s   ratio {b / max(a, 1e-9):,.0f}x")
    # gauges: new/returning customers, counted over every customer before, kept counts after
    loop = [cpu(lambda: sum(s.record.n_purchase_days == 1 for s in seg.rfm.customers.values())
                + sum(s.record.n_purchase_days > 1 for s in seg.rfm.customers.values()))
            for _ in range(args.runs)]  # fmt: skip
    kept = [cpu(lambda: seg.rfm.new_customers + seg.rfm.returning_customers) for _ in range(args.runs)]
    b, a = statistics.median(loop), statistics.median(kept)
    print(f"  {'gauges (new / returning customers)':<52} before {b:.4f} s   after {a:.6f} s   ratio {b / max(a, 1e-9):,.0f}x")


if __name__ == "__main__":
    main()
