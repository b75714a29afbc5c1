"""Exact per-customer RFM state and its idempotent update.

The state of one customer is a small flat record (:class:`RfmRecord`) plus two
sets kept beside it: the event ids already applied and the UTC days that had a
purchase. The update :func:`apply_event` is a pure function of the record, the
event and two booleans that those sets answer (``is the event new?``, ``is the
day new?``). That shape is deliberate: in Redis the sets are ``SADD`` targets
whose return value (1 = added) gives exactly those booleans, and the record is
a hash updated with ``HINCRBY``/min/max in one Lua script, so the stream side
implements the same function without reading the whole history.

Every field is order-independent (min, max, integer sums), so applying events
in any order, with any duplicates, gives the same record as the batch
reference :func:`recompute`. Money is summed in integer micro-units
(``round(amount * 1e6)``) because float sums depend on order and would break
that equality (and ``HINCRBY`` is integer).

Definitions follow lifetimes' ``summary_data_from_transaction_data`` with a
daily period: ``frequency`` = number of distinct purchase days after the first
(repeat purchase periods), ``recency`` = days between the first and the last
purchase day (age at last purchase), ``T`` = days between the first purchase
day and ``now`` (age now), ``monetary_value`` = mean spend of the repeat
purchase days (lifetimes sums a day's purchases into one and leaves the first
day out: the Gamma-Gamma input; 0 without repeats). That needs one more
order-independent field: the spend on the earliest purchase day. ``T`` and
``days_since_last`` depend on ``now``: the stored summary says them at the
time it was written, and readers recompute them for one fleet-wide
observation time with :func:`observed_at`. Only ``PURCHASED`` events count as purchases;
``VIEWED`` and ``PROCESSED`` are kept as engagement counts.

Examples:
    >>> from datetime import UTC, datetime
    >>> from stream.schemas import Purchase
    >>> def p(i: str, day: int, amount: float, kind: str = "PURCHASED") -> Purchase:
    ...     return Purchase(event_id=i, customer_id="C1", event_type=kind, amount=amount,
    ...                     ts=datetime(2026, 1, day, 12, tzinfo=UTC))
    >>> events = [p("a", 1, 10.0), p("b", 1, 5.0), p("c", 4, 30.0), p("v", 5, 0.0, "VIEWED")]
    >>> state = CustomerRfm.empty("C1")
    >>> for e in events + events:   # the second pass is a re-delivery: no effect
    ...     _ = state.apply(RfmEvent.from_purchase(e))
    >>> s = state.record.summary(now=datetime(2026, 1, 11, tzinfo=UTC))
    >>> (s.n_purchases, s.n_purchase_days, s.frequency, s.recency_days, s.T_days)
    (3, 2, 1, 3, 10)
    >>> (s.total_spend, s.monetary_mean, s.first_day_spend, s.monetary_value, s.n_viewed)
    (45.0, 15.0, 15.0, 30.0, 1)
    >>> recompute(events)["C1"] == state.record
    True

References:
    Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An
    Alternative to the Pareto/NBD Model", Marketing Science 24(2) (BG/NBD:
    frequency, recency and T as defined here); lifetimes documentation,
    ``lifetimes.utils.summary_data_from_transaction_data``.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

from stream.schemas import Purchase

DAY_S = 86_400
MICROS = 1_000_000

EventType = Literal["VIEWED", "PROCESSED", "PURCHASED"]


def to_micros(amount: float) -> int:
    """Money as integer micro-units: exact, order-independent sums.

    Examples:
        >>> to_micros(0.1) + to_micros(0.2) == to_micros(0.3)
        True
    """
    return round(amount * MICROS)


def epoch_day(ts: float) -> int:
    """UTC day number of an epoch timestamp (the lifetimes 'period' with freq='D').

    Examples:
        >>> epoch_day(86_399.9), epoch_day(86_400.0)
        (0, 1)
    """
    return math.floor(ts / DAY_S)


@dataclass(frozen=True, slots=True)
class RfmEvent:
    """The part of a :class:`~stream.schemas.Purchase` that RFM needs, normalised.

    ``ts`` is UTC epoch seconds; ``amount_micros`` integer micro-units.
    """

    event_id: str
    customer_id: str
    ts: float
    event_type: EventType
    amount_micros: int

    @property
    def day(self) -> int:
        """UTC day number of the event."""
        return epoch_day(self.ts)

    @classmethod
    def from_purchase(cls, event: Purchase) -> RfmEvent:
        """Normalise a validated purchase event."""
        return cls(
            event_id=event.event_id,
            customer_id=event.customer_id,
            ts=event.ts.timestamp(),
            event_type=event.event_type,
            amount_micros=to_micros(event.amount),
        )


class RfmSummary(BaseModel):
    """Readable RFM summary of one customer at time ``now`` (what Redis/API expose).

    ``frequency``, ``recency_days``, ``T_days`` and ``monetary_value`` are
    lifetimes-style with a daily period; ``monetary_mean`` is the mean spend
    per purchase (first included); ``days_since_last`` is what the R score is
    about. ``T_days`` and ``days_since_last`` are as of ``now``.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    first_purchase: datetime | None
    last_purchase: datetime | None
    n_purchases: int
    n_purchase_days: int
    total_spend: float
    monetary_mean: float
    frequency: int
    recency_days: int
    T_days: int
    days_since_last: float | None
    n_viewed: int
    n_processed: int
    first_day_spend: float = 0.0
    monetary_value: float = 0.0


@dataclass(frozen=True, slots=True)
class RfmRecord:
    """The flat, small per-customer RFM record (one Redis hash).

    ``first_ts``/``last_ts`` are epoch seconds of the first/last purchase
    (``None`` before the first purchase); ``n_purchase_days`` counts distinct
    UTC purchase days; ``total_micros`` is spend in micro-units and
    ``first_day_micros`` the spend on the first purchase day.
    """

    customer_id: str
    first_ts: float | None = None
    last_ts: float | None = None
    n_purchases: int = 0
    n_purchase_days: int = 0
    total_micros: int = 0
    n_viewed: int = 0
    n_processed: int = 0
    first_day_micros: int = 0

    @property
    def has_purchases(self) -> bool:
        """Whether the customer is part of the RFM population (bought at least once)."""
        return self.n_purchases > 0

    @property
    def frequency(self) -> int:
        """Repeat purchase periods: distinct purchase days after the first."""
        return max(self.n_purchase_days - 1, 0)

    @property
    def monetary_mean(self) -> float:
        """Mean spend per purchase (0 before the first purchase)."""
        return self.total_micros / MICROS / self.n_purchases if self.n_purchases else 0.0

    @property
    def monetary_value(self) -> float:
        """lifetimes' ``monetary_value``: mean spend of the repeat purchase days (0 without repeats)."""
        f = self.frequency
        return (self.total_micros - self.first_day_micros) / MICROS / f if f else 0.0

    @property
    def total_spend(self) -> float:
        """Total spend in currency units."""
        return self.total_micros / MICROS

    @property
    def recency_days(self) -> int:
        """Age at the last purchase, in days (last purchase day - first purchase day)."""
        if self.first_ts is None or self.last_ts is None:
            return 0
        return epoch_day(self.last_ts) - epoch_day(self.first_ts)

    def T_days(self, now: datetime) -> int:
        """Age now, in days (day of ``now`` - first purchase day)."""
        if self.first_ts is None:
            return 0
        return epoch_day(now.timestamp()) - epoch_day(self.first_ts)

    def summary(self, now: datetime) -> RfmSummary:
        """The readable summary at ``now``."""

        def dt(ts: float | None) -> datetime | None:
            return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)

        return RfmSummary(
            customer_id=self.customer_id,
            first_purchase=dt(self.first_ts),
            last_purchase=dt(self.last_ts),
            n_purchases=self.n_purchases,
            n_purchase_days=self.n_purchase_days,
            total_spend=self.total_spend,
            monetary_mean=self.monetary_mean,
            frequency=self.frequency,
            recency_days=self.recency_days,
            T_days=self.T_days(now),
            days_since_last=None if self.last_ts is None else (now.timestamp() - self.last_ts) / DAY_S,
            n_viewed=self.n_viewed,
            n_processed=self.n_processed,
            first_day_spend=self.first_day_micros / MICROS,
            monetary_value=self.monetary_value,
        )


def observed_at(rfm: dict[str, Any], now: float) -> dict[str, Any]:
    """An ``rfm`` object (as stored and served) with ``T_days`` and ``days_since_last`` at ``now`` (epoch s).

    Every reader uses one observation time for every customer (the fleet's
    event clock, or an explicit ``as_of``), so customers written at different
    times, by partitions whose clocks differ, are comparable. A ``now`` before
    the last purchase is taken as the last purchase (the state already holds it).

    Examples:
        >>> r = {"first_purchase": "2026-01-01T12:00:00Z", "last_purchase": "2026-01-04T00:00:00Z",
        ...      "recency_days": 3, "T_days": 3, "days_since_last": 0.0}
        >>> now = datetime(2026, 1, 11, 6, tzinfo=UTC).timestamp()
        >>> out = observed_at(r, now)
        >>> out["T_days"], out["days_since_last"], out["as_of"]
        (10, 7.25, '2026-01-11T06:00:00Z')
    """
    first, last = rfm.get("first_purchase"), rfm.get("last_purchase")
    out = dict(rfm)
    out["as_of"] = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not first or not last:
        return out
    first_ts = datetime.fromisoformat(first).timestamp()
    last_ts = datetime.fromisoformat(last).timestamp()
    at = max(now, last_ts)
    out["T_days"] = epoch_day(at) - epoch_day(first_ts)
    out["days_since_last"] = (at - last_ts) / DAY_S
    return out


def apply_event(record: RfmRecord, event: RfmEvent, *, new_event: bool, new_day: bool) -> RfmRecord:
    """Apply one event to a record: the whole update rule, pure.

    ``new_event`` says the event id was not applied before (``SADD seen id``
    returned 1); ``new_day`` says the event's UTC day had no purchase before
    (``SADD days day`` returned 1; only asked for purchases). A duplicate
    returns the record unchanged, which is what makes re-delivery harmless.

    Examples:
        >>> r = RfmRecord("C1")
        >>> e = RfmEvent("e1", "C1", 86_400.0 * 3, "PURCHASED", 2_500_000)
        >>> r = apply_event(r, e, new_event=True, new_day=True)
        >>> (r.n_purchases, r.total_micros, r.first_ts == r.last_ts)
        (1, 2500000, True)
        >>> apply_event(r, e, new_event=False, new_day=False) is r
        True
    """
    if not new_event:
        return record
    if event.event_type == "VIEWED":
        return replace(record, n_viewed=record.n_viewed + 1)
    if event.event_type == "PROCESSED":
        return replace(record, n_processed=record.n_processed + 1)
    day = event.day
    first_day = None if record.first_ts is None else epoch_day(record.first_ts)
    if first_day is None or day < first_day:
        first_day_micros = event.amount_micros
    elif day == first_day:
        first_day_micros = record.first_day_micros + event.amount_micros
    else:
        first_day_micros = record.first_day_micros
    return replace(
        record,
        first_ts=event.ts if record.first_ts is None else min(record.first_ts, event.ts),
        last_ts=event.ts if record.last_ts is None else max(record.last_ts, event.ts),
        n_purchases=record.n_purchases + 1,
        n_purchase_days=record.n_purchase_days + (1 if new_day else 0),
        total_micros=record.total_micros + event.amount_micros,
        first_day_micros=first_day_micros,
    )


SMALL_SET = 8
"""Up to this many event keys (or purchase days) a customer keeps them in a tuple; past it, in a sorted array.

Most customers have a handful: a tuple of three is 64 bytes. A customer's events and purchase days grow
with its history for as long as the state is kept (every event id must stay known, so that a re-import
or re-delivery counts nothing twice): as a ``set`` of id strings and one of day numbers they cost about
160 bytes per event, 25 KB of RFM state for a customer with 150 events in a year; as sorted arrays of 64-bit
integers (the standard library's ``array``: a binary search and an insert in C, faster than numpy's
per-call overhead on arrays this small), 8 bytes per event or day (:func:`_with`)."""

Keys: TypeAlias = "tuple[int, ...] | array[int]"  # a string: array is subscriptable at run time from 3.12
"""A customer's event keys or purchase days: a short tuple, or a sorted ``array('q')``."""


def event_key(event_id: str) -> int:
    """The 64-bit key an event id is remembered by: the first 8 bytes of its BLAKE2b digest, signed.

    Why not the id itself: the ids of every event a customer ever sent are kept, and an id string costs
    50–100 bytes, its key 8 in an array. Two ids of one customer share a key with probability about
    n²/2⁶⁵ for n events (10⁻¹⁴ for 1 000 events); such a pair would count the second event as a
    re-delivery.

    Examples:
        >>> event_key("sim0-202601010000-p00000001") == event_key("sim0-202601010000-p00000001")
        True
        >>> event_key("a") != event_key("b"), -2**63 <= event_key("a") < 2**63
        (True, True)
    """
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)


def _contains(values: Keys, value: int) -> bool:
    """Whether ``value`` is among ``values`` (a binary search in an array)."""
    if isinstance(values, tuple):
        return value in values
    i = bisect_left(values, value)
    return i < len(values) and values[i] == value


def _with(values: Keys, value: int) -> Keys:
    """``values`` with ``value`` added: a short tuple extended, a longer one a sorted array with it inserted.

    Examples:
        >>> k: Keys = ()
        >>> for v in (5, 1, 9, 3, 7, 2, 8, 6, 4):
        ...     k = _with(k, v)
        >>> type(k).__name__, k.tolist(), _contains(k, 4), _contains(k, 10)
        ('array', [1, 2, 3, 4, 5, 6, 7, 8, 9], True, False)
    """
    if isinstance(values, tuple):
        if len(values) < SMALL_SET:
            return (*values, value)
        values = array("q", sorted(values))
    values.insert(bisect_left(values, value), value)
    return values


def _compact(values: Iterable[int]) -> Keys:
    items = sorted(set(values))
    return tuple(items) if len(items) <= SMALL_SET else array("q", items)


def _sorted(values: Keys) -> list[int]:
    return sorted(values) if isinstance(values, tuple) else values.tolist()


@dataclass(slots=True, eq=False)
class CustomerRfm:
    """A customer's record plus the two collections that make updates idempotent.

    ``seen`` (the keys of the event ids applied, :func:`event_key`) and ``days`` (UTC purchase days)
    behave as sets; short ones are tuples, longer ones sorted arrays (see :data:`SMALL_SET`): this
    object is held for every customer of a worker's partitions, for as long as the customer lives.

    In Redis (the reference script below): ``rfm:{cid}`` (hash = record), ``rfm:seen:{cid}`` (set of
    event ids), ``rfm:days:{cid}`` (set of UTC purchase days).

    Examples:
        >>> c = CustomerRfm.empty("C1")
        >>> [c.apply(RfmEvent(f"e{i % 10}", "C1", 86400.0 * i, "PURCHASED", 1)) for i in range(12)].count(True)
        10
        >>> type(c.seen).__name__, len(c.seen), type(c.days).__name__, c.record.n_purchase_days, c.has_seen("e3")
        ('array', 10, 'array', 10, True)
        >>> CustomerRfm.from_json("C1", c.to_json()).to_json() == c.to_json()
        True
    """

    record: RfmRecord
    seen: Keys = ()
    days: Keys = ()

    @classmethod
    def empty(cls, customer_id: str) -> CustomerRfm:
        """State of a customer with no events yet."""
        return cls(RfmRecord(customer_id))

    def has_seen(self, event_id: str) -> bool:
        """Whether an event of this id was applied already."""
        return _contains(self.seen, event_key(event_id))

    def apply(self, event: RfmEvent) -> bool:
        """Apply an event once; returns whether anything changed."""
        key = event_key(event.event_id)
        if _contains(self.seen, key):
            return False
        self.seen = _with(self.seen, key)
        new_day = False
        if event.event_type == "PURCHASED" and not _contains(self.days, event.day):
            self.days = _with(self.days, event.day)
            new_day = True
        self.record = apply_event(self.record, event, new_event=True, new_day=new_day)
        return True

    def to_json(self) -> dict[str, object]:
        """JSON-serialisable form (keys and days as sorted lists, so snapshots are deterministic)."""
        r = self.record
        return {
            "record": [r.first_ts, r.last_ts, r.n_purchases, r.n_purchase_days, r.total_micros,
                       r.n_viewed, r.n_processed, r.first_day_micros],
            "seen": _sorted(self.seen),
            "days": _sorted(self.days),
        }

    @classmethod
    def from_json(cls, customer_id: str, data: dict[str, object]) -> CustomerRfm:
        """Inverse of :meth:`to_json`; a snapshot written before the keys kept the event ids themselves."""
        f = data["record"]
        assert isinstance(f, list)
        seen = data["seen"]
        days = data["days"]
        assert isinstance(seen, list) and isinstance(days, list)
        # snapshots written before first_day_micros existed restore it as 0 (monetary_value then counts the
        # first day too until the customer's state is rebuilt, e.g. by re-importing their history)
        first_day = int(f[7]) if len(f) > 7 else 0
        record = RfmRecord(customer_id, f[0], f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]), first_day)
        keys = (event_key(s) if isinstance(s, str) else int(s) for s in seen)
        return cls(record, _compact(keys), _compact(int(d) for d in days))


RFM_APPLY_LUA = """
-- processors.rfm.state.apply_event as a Redis script: the same rule, atomically, per customer.
-- KEYS[1] record hash rfm:{cid}   KEYS[2] seen-event set rfm:seen:{cid}   KEYS[3] day set rfm:days:{cid}
-- (use a {cid} hash tag so the three keys share a cluster slot)
-- ARGV: event_id, event_type, ts (epoch seconds as repr(float)), UTC day number, amount in micro-units
-- returns 1 if applied, 0 for a duplicate
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local kind = ARGV[2]
if kind == 'VIEWED' then redis.call('HINCRBY', KEYS[1], 'n_viewed', 1) return 1 end
if kind == 'PROCESSED' then redis.call('HINCRBY', KEYS[1], 'n_processed', 1) return 1 end
local ts = tonumber(ARGV[3])
local first = tonumber(redis.call('HGET', KEYS[1], 'first_ts'))
local first_day = first and math.floor(first / 86400)
local day = tonumber(ARGV[4])
if first_day == nil or day < first_day then redis.call('HSET', KEYS[1], 'first_day_micros', ARGV[5])
elseif day == first_day then redis.call('HINCRBY', KEYS[1], 'first_day_micros', ARGV[5]) end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_ts'))
if first == nil or ts < first then redis.call('HSET', KEYS[1], 'first_ts', ARGV[3]) end
if last == nil or ts > last then redis.call('HSET', KEYS[1], 'last_ts', ARGV[3]) end
redis.call('HINCRBY', KEYS[1], 'n_purchases', 1)
redis.call('HINCRBY', KEYS[1], 'total_micros', ARGV[5])
if redis.call('SADD', KEYS[3], ARGV[4]) == 1 then redis.call('HINCRBY', KEYS[1], 'n_purchase_days', 1) end
return 1
"""
"""Reference Redis Lua implementation of :func:`apply_event` plus the two idempotence sets.

Arguments come from :func:`lua_args`; the hash reads back with :func:`record_from_hash`.
"""


def lua_args(event: RfmEvent) -> list[str]:
    """ARGV for :data:`RFM_APPLY_LUA` (timestamps as ``repr`` so they read back bit-exact).

    Examples:
        >>> lua_args(RfmEvent("e1", "C1", 90061.5, "PURCHASED", 2_500_000))
        ['e1', 'PURCHASED', '90061.5', '1', '2500000']
    """
    return [event.event_id, event.event_type, repr(event.ts), str(event.day), str(event.amount_micros)]


def record_from_hash(customer_id: str, fields: dict[str, str] | dict[bytes, bytes]) -> RfmRecord:
    """An :class:`RfmRecord` from the Redis hash the Lua script maintains (``HGETALL``).

    Examples:
        >>> record_from_hash("C1", {b"first_ts": b"10.5", b"last_ts": b"99.0", b"n_purchases": b"2",
        ...                         b"n_purchase_days": b"1", b"total_micros": b"3000000"}).total_spend
        3.0
    """
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in fields.items()}

    def num(name: str) -> int:
        return int(f.get(name, 0))

    return RfmRecord(
        customer_id=customer_id,
        first_ts=float(f["first_ts"]) if "first_ts" in f else None,
        last_ts=float(f["last_ts"]) if "last_ts" in f else None,
        n_purchases=num("n_purchases"),
        n_purchase_days=num("n_purchase_days"),
        total_micros=num("total_micros"),
        n_viewed=num("n_viewed"),
        n_processed=num("n_processed"),
        first_day_micros=num("first_day_micros"),
    )


def recompute(events: Iterable[Purchase | RfmEvent]) -> dict[str, RfmRecord]:
    """Batch reference: every customer's record from scratch, by set operations.

    Independent of :func:`apply_event` on purpose (groups, then takes min/max/
    counts over the de-duplicated events) so tests comparing it with the
    incremental path check the update rule rather than reuse it.
    """
    unique: dict[tuple[str, str], RfmEvent] = {}
    for ev in events:
        e = RfmEvent.from_purchase(ev) if isinstance(ev, Purchase) else ev
        unique.setdefault((e.customer_id, e.event_id), e)
    by_customer: dict[str, list[RfmEvent]] = {}
    for (cid, _), e in unique.items():
        by_customer.setdefault(cid, []).append(e)
    out: dict[str, RfmRecord] = {}
    for cid, evs in by_customer.items():
        bought = [e for e in evs if e.event_type == "PURCHASED"]
        first_day = min((e.day for e in bought), default=None)
        out[cid] = RfmRecord(
            customer_id=cid,
            first_ts=min((e.ts for e in bought), default=None),
            last_ts=max((e.ts for e in bought), default=None),
            n_purchases=len(bought),
            n_purchase_days=len({e.day for e in bought}),
            total_micros=sum(e.amount_micros for e in bought),
            n_viewed=sum(1 for e in evs if e.event_type == "VIEWED"),
            n_processed=sum(1 for e in evs if e.event_type == "PROCESSED"),
            first_day_micros=sum(e.amount_micros for e in bought if e.day == first_day),
        )
    return out
