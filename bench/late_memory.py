"""What a longer allowed lateness costs in memory per meter: open windows vs compact closed state.

Three configurations of the same windows and deduplicator, fed the same readings (``--meters``
15-minute meters, ``--days`` days, one hour missing per day on ``--gappy`` of the meters, which keeps
partial windows in the correction store):

* ``1h, no corrections`` - the engine before issue 13: windows close 1 h after their end, a later
  reading is ``too_late``;
* ``48h open windows`` - the naive way to a 48 h lateness: keep every window open for 48 h
  (the ring holds ``lateness / size + 2`` windows per meter and size);
* ``1h + 48h corrections`` - the engine now: windows close after 1 h, a late reading within 48 h of its
  meter's newest reading reads the closed window back from compact state (ledger, partial windows) and
  the duplicate ring covers the 48 h.

Printed per meter: bytes of the numpy state (rings, ledger, duplicate ring), the estimated size of the
correction store, and the JSON checkpoint size.

    .venv/bin/python -m bench.late_memory --meters 20000 --days 3
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import orjson

from processors.columns import EPOCH, MeterRegistry, ReadingColumns
from processors.dedupe import Deduplicator
from processors.windows import ConsumptionWindows, WindowConfig
from stream.schemas import MeterInfo

T0 = 1_767_225_600


def _registry(n: int) -> MeterRegistry:
    return MeterRegistry(
        MeterInfo(meter_id=f"M{i:07d}", customer_id=f"C{i:07d}", region=("N", "S", "E", "W")[i % 4],
                  tariff="prepaid" if i % 2 else "postpaid", installed_on=EPOCH)
        for i in range(n)
    )  # fmt: skip


def _polls(n: int, days: int, gappy: float, seed: int = 0) -> list[dict[str, Any]]:
    """One poll (columns) per 15-minute interval; ``gappy`` of the meters skip one hour a day."""
    rng = np.random.default_rng(seed)
    skip_hour = np.where(rng.random(n) < gappy, rng.integers(0, 24, n), -1)
    ids = [f"M{i:07d}" for i in range(n)]
    out = []
    for k in range(days * 96):
        t = T0 + 900 * k
        hour = (k % 96) // 4
        send = skip_hour != hour
        kwh = rng.gamma(2.0, 0.05, n).round(3)
        out.append({"ids": [ids[i] for i in np.flatnonzero(send)], "t": t, "kwh": kwh[send]})
    return out


def _columns(registry: MeterRegistry, poll: dict[str, Any]) -> ReadingColumns:
    rows = [{"meter_id": m, "customer_id": "C", "interval_start": poll["t"], "kwh_import": float(v),
             "register_kwh": 1.0, "voltage": 230.0, "seq": 0} for m, v in zip(poll["ids"], poll["kwh"], strict=True)]  # fmt: skip
    return ReadingColumns.from_rows(registry, rows)


def measure(name: str, cfg: WindowConfig, horizon_s: int | None, registry: MeterRegistry,
            batches: list[ReadingColumns], n: int) -> dict[str, float]:  # fmt: skip
    windows = ConsumptionWindows(cfg)
    dedupe = Deduplicator(horizon_s=horizon_s)
    started = time.perf_counter()
    for b in batches:
        windows.process(dedupe.process(b).readings)
    seconds = time.perf_counter() - started
    rings = sum(r.start[:n].nbytes + r.count[:n].nbytes + r.interval_s[:n].nbytes
                + sum(a[:n].nbytes for a in r.floats.values()) for r in windows.meter_rings)  # fmt: skip
    ledger = windows.ledger.nbytes(n) if cfg.allowed_lateness_s else 0
    ring_bits = dedupe._hw[:n].nbytes + dedupe._mask[: n * dedupe.words].nbytes
    store = windows.revision_bytes() - windows.ledger.nbytes(n) if cfg.allowed_lateness_s else 0
    snapshot = len(orjson.dumps({"windows": windows.snapshot(), "dedupe": dedupe.snapshot()}))
    total = rings + ledger + ring_bits + store
    row = {"open rings": rings / n, "ledger": ledger / n, "duplicate ring": ring_bits / n,
           "closed store": store / n, "total": total / n, "checkpoint": snapshot / n,
           "partial windows kept": float(len(windows.store)), "readings/s": sum(map(len, batches)) / seconds}  # fmt: skip
    print(f"{name:<24} " + "  ".join(f"{k} {v:,.0f}" for k, v in row.items()))
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=20_000)
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--gappy", type=float, default=0.1, help="share of meters missing one hour a day")
    args = p.parse_args(argv)
    registry = _registry(args.meters)
    batches = [_columns(registry, poll) for poll in _polls(args.meters, args.days, args.gappy)]
    n = args.meters
    print(f"{n:,} meters, {args.days} days of 15-minute readings, {args.gappy:.0%} missing one hour a day; "
          "bytes per meter:")  # fmt: skip
    measure("1h, no corrections", WindowConfig(allowed_lateness_s=0), None, registry, batches, n)
    measure("48h open windows", WindowConfig(close_after_s=172_800, allowed_lateness_s=0), 172_800, registry,
            batches, n)  # fmt: skip
    measure("1h + 48h corrections", WindowConfig(), 172_800, registry, batches, n)


if __name__ == "__main__":
    main()
