"""Customer-side events: purchases and payments, bills, maintenance requests and feedback.

Purchases are what RFM segments are computed from, so they are drawn to make
the segments meaningful rather than uniform noise:

* the daily *intent* rate depends on the engagement class (loyal buyers most
  days, occasional ones rarely, lapsing ones stop at their lapse day, new ones
  start at their first day) and on the archetype (EV and solar households buy
  more, near-vacant ones almost nothing);
* prepaid customers mostly top up, with amounts proportional to their expected
  consumption; postpaid ones buy products and plans matching their archetype
  (EV chargers, home batteries, thermostats, ...) and pay their bills;
* each intent goes through the funnel VIEWED -> PROCESSED -> PURCHASED with
  drop-offs, minutes apart, on the customer's preferred channel most of the time.

Operations events come at modest rates for the operator dashboards: a monthly
bill per postpaid customer (published unpaid at issue, re-published with
``paid_at`` when paid, together with a ``bill_payment`` purchase; some bills
stay unpaid), maintenance requests (half of the physical meter faults cause
one, plus a background rate; re-published with ``resolved_at`` when
resolved), and satisfaction feedback (lower after faults and for lapsing
customers).

Everything is generated per simulated day, vectorised where the fleet is
involved, as :class:`Timed` events that the generator releases when the
simulated clock reaches their time stamp.

Examples:
    >>> from datetime import UTC, datetime
    >>> from simulators.fleet import FleetConfig, build_fleet
    >>> f = build_fleet(FleetConfig(meters=2000, seed=2))
    >>> c = Commerce(f, datetime(2026, 1, 1, tzinfo=UTC), seed=2, physical_faults=[])
    >>> ev = c.day_events(0, daily_kwh=np.full(f.n_meters, 10.0), stopped=np.zeros(f.n_customers, bool))
    >>> {"bills", "feedback", "purchases"} <= {e.topic for e in ev}
    True
    >>> all(0 < e.ts_s <= 86400 + 86400 * 30 for e in ev)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from simulators.archetypes import CATALOGUE
from simulators.encode import dumps, iso_str
from simulators.faults import Fault
from simulators.fleet import ENGAGEMENT, Fleet

PRICE_PER_KWH = 0.25
CHANNELS: tuple[str, ...] = ("web", "app", "store", "agent")

#: intents per customer-day by engagement class (loyal, regular, occasional, lapsing, new)
INTENT_RATE = np.array([0.5, 0.12, 0.03, 0.35, 0.35])
BILL_PAID_SHARE = np.array([0.98, 0.92, 0.85, 0.6, 0.9])
FEEDBACK_MEAN = np.array([4.4, 3.9, 3.5, 2.6, 4.0])

PRODUCTS: dict[str, tuple[tuple[str, float], ...]] = {
    "ev_night_charging": (("EV-CHARGER-7KW", 649.0), ("SMART-PLUG", 24.9)),
    "solar_prosumer": (("HOME-BATTERY-5KWH", 2990.0), ("PV-MONITOR", 89.0)),
    "electric_heating": (("SMART-THERMOSTAT", 149.0), ("INSULATION-CHECK", 60.0)),
    "small_business": (("POWER-QUALITY-AUDIT", 350.0), ("LED-RETROFIT", 420.0)),
    "default": (("SMART-PLUG", 24.9), ("LED-BULB-PACK", 19.9), ("ENERGY-MONITOR", 59.0)),
}
PLANS: dict[str, tuple[str, float]] = {
    "ev_night_charging": ("PLAN-EV-NIGHT", 12.0),
    "solar_prosumer": ("PLAN-EXPORT-PLUS", 9.0),
    "small_business": ("PLAN-BUSINESS", 25.0),
    "default": ("PLAN-GREEN", 6.0),
}
PHYSICAL = frozenset({"stuck", "voltage", "dropout", "negative"})


@dataclass(frozen=True, slots=True)
class Timed:
    """An event due at ``ts_s`` seconds after the start. ``payment`` events stop when the customer stops buying."""

    ts_s: int
    order: int
    topic: str  # logical topic: purchases, bills, maintenance, feedback
    customer: int
    value: bytes
    payment: bool = False


class Commerce:
    """Draws one day of customer-side events at a time (call :meth:`day_events` with increasing days)."""

    def __init__(self, fleet: Fleet, start: datetime, seed: int, physical_faults: Sequence[Fault],
                 purchase_rate: float = 1.0, ops: bool = True) -> None:
        self.fleet = fleet
        self.start = start
        self.seed = seed
        self.purchase_rate = purchase_rate
        self.ops = ops
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 6]))
        n = fleet.n_customers
        self.channel_pref = self.rng.choice(len(CHANNELS), size=n, p=[0.35, 0.35, 0.2, 0.1]).astype(np.int8)
        self.cycle_day = self.rng.integers(0, 30, size=n, dtype=np.int8)
        self.faulty_customers = np.zeros(n, dtype=bool)
        self._order = 0
        self._ids: dict[str, int] = {}
        self._pending: list[Timed] = []
        for f in physical_faults:
            if f.kind in PHYSICAL:
                self.faulty_customers[fleet.meter_customer[f.meter]] = True
        if ops:
            self._fault_maintenance(physical_faults)

    # ----------------------------------------------------------------- helpers
    def _id(self, prefix: str) -> str:
        n = self._ids.get(prefix, 0)
        self._ids[prefix] = n + 1
        # the run's start in the id: a later run of the same fleet (another --start) sends new events, not
        # what consumers would drop as retransmissions of the earlier run's
        return f"sim{self.seed}-{self.start:%Y%m%d%H%M}-{prefix}{n:08d}"

    def _ts(self, seconds: int) -> str:
        return iso_str(self.start + timedelta(seconds=seconds))

    def _timed(self, ts_s: int, topic: str, customer: int, obj: dict[str, Any], payment: bool = False) -> Timed:
        self._order += 1
        return Timed(ts_s, self._order, topic, customer, dumps(obj), payment)

    def _cid(self, customer: int) -> str:
        return self.fleet.customer_ids[customer].decode()

    def _channel(self, customer: int, u: float) -> str:
        if u < 0.8:
            return CHANNELS[int(self.channel_pref[customer])]
        return CHANNELS[int(u * 100) % len(CHANNELS)]

    def _purchase(self, ts_s: int, customer: int, event_type: str, kind: str, code: str | None,
                  amount: float, quantity: int, channel: str) -> Timed:
        return self._timed(ts_s, "purchases", customer, {
            "schema_version": 1,
            "event_id": self._id("p"),
            "customer_id": self._cid(customer),
            "ts": self._ts(ts_s),
            "event_type": event_type,
            "kind": kind,
            "product_code": code,
            "amount": round(amount, 2),
            "quantity": quantity,
            "channel": channel,
        }, payment=True)

    # --------------------------------------------------------------- purchases
    def _purchases(self, day: int, cust_kwh: np.ndarray, stopped: np.ndarray) -> list[Timed]:
        fl = self.fleet
        rng = self.rng
        eng = fl.engagement
        rate = INTENT_RATE[eng].copy()
        lapsing = eng == ENGAGEMENT.index("lapsing")
        rate[lapsing & (day >= fl.lapse_day)] = 0.003
        new = eng == ENGAGEMENT.index("new")
        rate[new & (day < fl.first_day)] = 0.0
        affinity = np.array([a.purchase_affinity for a in CATALOGUE])
        rate *= affinity[fl.archetype] * np.where(fl.prepaid, 1.2, 1.0) * self.purchase_rate
        rate[stopped] = 0.0
        counts = rng.poisson(rate)
        who = np.repeat(np.arange(fl.n_customers), counts)
        if who.size == 0:
            return []
        base = day * 86400
        offsets = rng.integers(1, 86400, size=who.size)
        order = np.lexsort((who, offsets))
        who, offsets = who[order], offsets[order]
        u = rng.random((who.size, 6))
        out: list[Timed] = []
        for c, off, row in zip(who.tolist(), offsets.tolist(), u.tolist(), strict=True):
            arch = CATALOGUE[int(fl.archetype[c])].name
            ts = base + off
            channel = self._channel(c, row[0])
            if fl.prepaid[c] and row[1] < 0.75:
                kind, code, qty = "topup", None, 1
                amount = max(5.0, round(cust_kwh[c] * PRICE_PER_KWH * (5 + 15 * row[2]) / 5.0) * 5.0)
                p_process = 0.95
            elif row[1] < 0.88:
                kind = "product"
                catalogue = PRODUCTS.get(arch, PRODUCTS["default"])
                code, price = catalogue[int(row[2] * len(catalogue))]
                qty = 1 + int(row[3] * 3) if price < 100 else 1
                amount = price * qty
                p_process = 0.55
            else:
                kind, qty = "plan", 1
                code, amount = PLANS.get(arch, PLANS["default"])
                p_process = 0.5
            if kind != "topup":
                out.append(self._purchase(ts, c, "VIEWED", kind, code, amount, qty, channel))
            if row[4] < p_process:
                ts += 30 + int(row[5] * 600)
                out.append(self._purchase(ts, c, "PROCESSED", kind, code, amount, qty, channel))
                if row[5] < 0.9:
                    out.append(self._purchase(ts + 5 + int(row[3] * 60), c, "PURCHASED", kind, code, amount,
                                              qty, channel))
        return out

    # -------------------------------------------------------------------- bills
    def _bills(self, day: int, cust_kwh: np.ndarray) -> list[Timed]:
        fl = self.fleet
        ordinal = (self.start + timedelta(days=day)).toordinal()
        due = np.flatnonzero(~fl.prepaid & (self.cycle_day == ordinal % 30))
        out: list[Timed] = []
        if due.size == 0:
            return out
        u = self.rng.random((due.size, 4))
        for c, row in zip(due.tolist(), u.tolist(), strict=True):
            kwh = round(float(cust_kwh[c]) * 30.0, 1)
            amount = round(kwh * PRICE_PER_KWH + 9.5, 2)
            issued = day * 86400 + 6 * 3600 + int(row[0] * 3600)
            bill = {
                "schema_version": 1, "bill_id": self._id("b"), "customer_id": self._cid(c),
                "issued_at": self._ts(issued), "amount": amount, "kwh": kwh, "paid_at": None,
            }
            out.append(self._timed(issued, "bills", c, bill))
            if row[1] < BILL_PAID_SHARE[fl.engagement[c]]:
                paid = issued + 86400 + int(row[2] * 19 * 86400)
                out.append(self._timed(paid, "bills", c, {**bill, "paid_at": self._ts(paid)}, payment=True))
                out.append(self._purchase(paid, c, "PURCHASED", "bill_payment", None, amount, 1,
                                          self._channel(c, row[3])))
        return out

    # -------------------------------------------------------- maintenance/feedback
    def _maintenance(self, ts_s: int, customer: int, meter: int | None, resolved_s: int) -> list[Timed]:
        rid = self._id("mr")
        tech = f"T{int(self.rng.integers(1, 60)):03d}"
        req = {
            "schema_version": 1, "request_id": rid, "customer_id": self._cid(customer),
            "meter_id": self.fleet.meter_ids[meter].decode() if meter is not None else None,
            "requested_at": self._ts(ts_s), "resolved_at": None, "technician_id": tech,
        }
        return [self._timed(ts_s, "maintenance", customer, req),
                self._timed(resolved_s, "maintenance", customer, {**req, "resolved_at": self._ts(resolved_s)})]

    def _fault_maintenance(self, faults: Sequence[Fault]) -> None:
        for f in faults:
            if f.kind not in PHYSICAL or self.rng.random() >= 0.5:
                continue
            req = f.start_min * 60 + int(self.rng.integers(3600, 12 * 3600))
            res = max(req + 1800, f.end_min * 60 + int(self.rng.integers(2 * 3600, 48 * 3600)))
            self._pending.extend(self._maintenance(req, int(self.fleet.meter_customer[f.meter]), f.meter, res))

    def _ops(self, day: int) -> list[Timed]:
        fl = self.fleet
        rng = self.rng
        out: list[Timed] = []
        n = fl.n_customers
        maint = np.flatnonzero(rng.random(n) < 0.0004)
        for c in maint.tolist():
            ts = day * 86400 + int(rng.integers(1, 86400))
            out.extend(self._maintenance(ts, c, None, ts + int(rng.integers(4 * 3600, 7 * 86400))))
        fb_rate = np.where(self.faulty_customers, 0.01, 0.002)
        fb = np.flatnonzero(rng.random(n) < fb_rate)
        for c in fb.tolist():
            ts = day * 86400 + int(rng.integers(1, 86400))
            mean = FEEDBACK_MEAN[fl.engagement[c]] - (1.2 if self.faulty_customers[c] else 0.0)
            score = int(np.clip(round(rng.normal(mean, 0.9)), 1, 5))
            out.append(self._timed(ts, "feedback", c, {
                "schema_version": 1, "feedback_id": self._id("fb"), "customer_id": self._cid(c),
                "ts": self._ts(ts), "score": score}))
        return out

    # ------------------------------------------------------------------- public
    def day_events(self, day: int, daily_kwh: np.ndarray, stopped: np.ndarray) -> list[Timed]:
        """Events of simulated ``day`` (negative days: purchase history only). ``daily_kwh`` is per meter."""
        cust_kwh = np.bincount(self.fleet.meter_customer, weights=daily_kwh, minlength=self.fleet.n_customers)
        out = self._purchases(day, cust_kwh, stopped)
        if day >= 0 and self.ops:
            out.extend(self._bills(day, cust_kwh))
            out.extend(self._ops(day))
        if self._pending and day >= 0:
            out.extend(self._pending)
            self._pending = []
        return out

