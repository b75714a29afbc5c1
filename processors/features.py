"""Per-customer load-shape features from closed daily windows, as decayed online means.

Input is one :class:`DailyProfile` per customer and day: the day's hourly
(or 30/15-minute, folded to hourly) kWh import and export. From each day we
compute the day's raw shape — total kWh, peak-to-average ratio, the shares of
night (00-06), morning (06-12), daytime (12-18) and evening (18-24)
consumption, export share — and fold it into an exponentially decayed mean per
customer. With the default half-life of one day, a behaviour change carries
75 % of the weight after two days, so segments can follow a shift (an EV
bought, a solar panel installed) within about two days while one odd day is
damped. The decayed mean is bias-corrected (weights normalised), so a new
customer's features are meaningful from the first day.

A per-customer shift rule (``shift_threshold``) restarts the means when two
consecutive weekdays break with the customer's usual weekday in the same direction,
so a real change is fully visible on its second day. ``variability`` is the
coefficient of variation of daily totals with its own, longer half-life (a
variance needs more than two days).

``weekday_weekend_ratio`` is observed on weekend days only - the day's total
against the customer's current weekday level - and kept as a decayed mean of
log ratios (1 until the first weekend). Between weekends it does not move: a
level change on a Monday (an EV bought) is assumed to apply to every day until
a weekend shows otherwise, instead of reading as a weekday/weekend contrast
for five days.

:class:`RunningScaler` is the online standard scaler: count/sum/sum of squares
per feature, *mergeable*, so per-partition workers can contribute to the one
fleet-wide scaling the shared cluster model uses (river's
``preprocessing.StandardScaler`` gives the same numbers but cannot merge).

Examples:
    >>> from datetime import date
    >>> evening = [0.1] * 18 + [1.0] * 6
    >>> fp = FeatureProcessor()
    >>> out = fp.process([DailyProfile(customer_id="C1", day=date(2026, 1, 5), kwh_import=evening)])
    >>> f = out[0].values
    >>> round(f["mean_daily_kwh"], 2), round(f["share_evening"], 3), round(f["peak_to_average"], 2)
    (7.8, 0.769, 3.08)
    >>> night = [1.0] * 6 + [0.1] * 18
    >>> for d in (6, 7):  # two days of a new, night-heavy behaviour
    ...     out = fp.process([DailyProfile(customer_id="C1", day=date(2026, 1, d), kwh_import=night)])
    >>> out[0].values["share_night"] > 0.5 > out[0].values["share_evening"]
    True
    >>> FeatureProcessor.restore(fp.snapshot()).snapshot() == fp.snapshot()
    True

References:
    river documentation, ``river.preprocessing.StandardScaler`` and
    ``river.stats.EWMean`` (the online mean/variance this module mirrors).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stream.schemas import EARLIEST, LATEST, CustomerId

LOAD_SHAPE_FEATURES: tuple[str, ...] = (
    "mean_daily_kwh",
    "peak_to_average",
    "share_night",
    "share_morning",
    "share_daytime",
    "share_evening",
    "weekday_weekend_ratio",
    "export_share",
    "variability",
)
"""Names of the load-shape features, in vector order."""

WEEKDAY_SHAPE: tuple[str, ...] = tuple(f"weekday_h{h:02d}" for h in range(24))
"""Share of a weekday's consumption in each hour (0-1, sums to 1): the customer's usual weekday shape."""

WEEKEND_SHAPE: tuple[str, ...] = tuple(f"weekend_h{h:02d}" for h in range(24))
"""Share of a weekend day's consumption in each hour (0-1, sums to 1); the weekday shape until a weekend is seen."""

CLUSTER_FEATURES: tuple[str, ...] = (
    "log10_daily_kwh", *WEEKDAY_SHAPE, *WEEKEND_SHAPE, "weekday_weekend_ratio", "export_share",
)
"""What the behaviour clusters compare, in vector order (units: ``log10_daily_kwh`` log10 of kWh per day;
the hourly shapes shares of the day, so seasonal level changes leave them alone; ``weekday_weekend_ratio``
weekday kWh per weekend-day kWh; ``export_share`` exported / (imported + exported) kWh). They travel in
:attr:`CustomerFeatures.shape`, not in ``values`` (which the API and the rules read)."""

ESTABLISHED_DAYS = 7
"""Days a customer needs, weekdays and weekend days among them, before its features describe its week."""

RFM_FEATURES: tuple[str, ...] = ("rfm.days_since_last", "rfm.frequency", "rfm.monetary_mean")
"""RFM values attached to a customer's features when known (see :meth:`FeatureProcessor.set_rfm`)."""

# indices into the per-day observation vector x (and the decayed-mean state): 7 day figures, then 24 hourly shares
_TOTAL, _P2A, _NIGHT, _MORNING, _DAY, _EVENING, _EXPORT = range(7)
_HOURS = 7
_N_OBS = 31
_PACKED_HEAD = 12  # scalars before the arrays in _CustomerShape.pack


MAX_INTERVAL_KWH = 1e9
"""Largest kWh of one interval of a :class:`DailyProfile` (a meter reads at most 1e6 per reading)."""


class DailyProfile(BaseModel):
    """Input record: one meter's (or one customer's) consumption profile for one closed day.

    ``kwh_import``/``kwh_export`` hold 24 hourly values (48 half-hourly or 96
    quarter-hourly values are folded to hours); hours are local to the day
    window the stream closed. ``weekday`` defaults from ``day`` (Mon-Fri).
    Several meters of a customer: send one record per meter with ``meter_id``
    set; :class:`FeatureProcessor` sums them into the customer's day.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: CustomerId
    day: date
    weekday: bool | None = None
    kwh_import: tuple[float, ...]
    kwh_export: tuple[float, ...] | None = None
    meter_id: str | None = Field(default=None, max_length=64)

    @field_validator("kwh_import", "kwh_export")
    @classmethod
    def _intervals(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is None:
            return v
        if len(v) not in (24, 48, 96):
            raise ValueError(f"need 24, 48 or 96 interval values, got {len(v)}")
        if not all(map(math.isfinite, v)):  # (map, not a generator: ~1 300 profiles per 125 k readings)
            raise ValueError("interval values must be finite")
        if max(map(abs, v), default=0.0) > MAX_INTERVAL_KWH:  # a day's variance squares its total: 1e200 kWh made NaN
            raise ValueError(f"interval values must lie within ±{MAX_INTERVAL_KWH:g} kWh")
        if len(v) != 24:
            v = tuple(float(x) for x in np.asarray(v, dtype=float).reshape(24, -1).sum(axis=1))
        return v

    @field_validator("day")
    @classmethod
    def _day_in_range(cls, v: date) -> date:
        if not EARLIEST.date() <= v < LATEST.date():  # the segmentation clock runs on from the last day
            raise ValueError(f"day must lie in the years {EARLIEST.year}-{LATEST.year - 1}, got {v.isoformat()}")
        return v

    @model_validator(mode="after")
    def _weekday(self) -> Self:
        if self.weekday is None:
            object.__setattr__(self, "weekday", self.day.weekday() < 5)
        return self


class CustomerFeatures(BaseModel):
    """Output record: a customer's current feature values after a day was folded in."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    day: date
    n_days: int
    values: dict[str, float]
    restarted: bool = False
    established: bool = True
    shape: dict[str, float] = Field(default_factory=dict)

    def vector(self, names: Sequence[str]) -> list[float]:
        """Values in the given order (missing features as NaN)."""
        return [self.values.get(n, math.nan) for n in names]

    def clustering_values(self) -> dict[str, float]:
        """``values`` and ``shape`` together: what :class:`~processors.clustering.model.FeatureSpec` reads."""
        return {**self.values, **self.shape} if self.shape else self.values


def day_observation(kwh_import: np.ndarray, kwh_export: np.ndarray | None) -> np.ndarray:
    """The raw shape of one day: total, peak-to-average, four period shares, export share, 24 hourly shares.

    Negative hourly imports (net metering) are clipped to 0 for the shape.

    Examples:
        >>> day_observation(np.full(24, 0.5), None)[:_HOURS].round(3).tolist()
        [12.0, 1.0, 0.25, 0.25, 0.25, 0.25, 0.0]
        >>> round(float(day_observation(np.full(24, 0.5), None)[_HOURS:].sum()), 6)
        1.0
    """
    imp = np.clip(kwh_import, 0.0, None)
    total = float(imp.sum())
    exp = float(np.clip(kwh_export, 0.0, None).sum()) if kwh_export is not None else 0.0
    x = np.zeros(_N_OBS)
    x[_TOTAL] = total
    if total > 0:
        x[_P2A] = float(imp.max()) * 24.0 / total  # not max / (total / 24): a tiny total / 24 underflows to 0
        periods = imp.reshape(4, 6).sum(axis=1) / total
        x[_NIGHT : _EVENING + 1] = periods
        x[_HOURS:] = imp / total
    else:
        x[_P2A] = 1.0
        x[_NIGHT : _EVENING + 1] = 0.25
        x[_HOURS:] = 1.0 / 24.0
    x[_EXPORT] = exp / (total + exp) if total + exp > 0 else 0.0
    return x


class _CustomerShape:
    """Decayed-mean state of one customer (plain floats/arrays; snapshot as lists)."""

    __slots__ = ("all", "all_w", "last_day", "log_ratio", "n_days", "pending", "ratio_w", "restarts",
                 "var_m1", "var_m2", "var_w", "wd", "wd_w", "we", "we_w")

    def __init__(self) -> None:
        self.all = np.zeros(_N_OBS)  # decayed mean of every day's observation: the features
        self.all_w = 0.0
        self.wd = np.zeros(_N_OBS)  # decayed mean of weekday observations: the "usual weekday"
        self.wd_w = 0.0
        self.we = np.zeros(_N_OBS)  # decayed mean of weekend-day observations: the weekend shape
        self.we_w = 0.0
        self.log_ratio = self.ratio_w = 0.0  # decayed mean of log(weekday level / weekend day total)
        self.var_m1 = self.var_m2 = self.var_w = 0.0
        self.pending: np.ndarray | None = None  # last weekday that broke with the usual weekday
        self.restarts = 0
        self.n_days = 0
        self.last_day = -1

    def to_json(self) -> list[Any]:
        scalars = [float(v) for v in (self.log_ratio, self.ratio_w, self.var_m1, self.var_m2, self.var_w)]
        return [self.all.tolist(), float(self.all_w), self.wd.tolist(), float(self.wd_w), *scalars,
                None if self.pending is None else self.pending.tolist(), self.restarts,
                self.n_days, self.last_day, self.we.tolist(), float(self.we_w)]

    @classmethod
    def from_json(cls, d: list[Any]) -> _CustomerShape:
        """Inverse of :meth:`to_json`; a state of the 7-figure format (before hourly shapes) is widened."""
        s = cls()
        s.all, s.all_w = _widen(d[0]), float(d[1])
        s.wd, s.wd_w = _widen(d[2]), float(d[3])
        (s.log_ratio, s.ratio_w, s.var_m1, s.var_m2, s.var_w) = (float(v) for v in d[4:9])
        s.pending = None if d[9] is None else _widen(d[9])
        s.restarts, s.n_days, s.last_day = int(d[10]), int(d[11]), int(d[12])
        if len(d) > 14:
            s.we, s.we_w = _widen(d[13]), float(d[14])
        return s

    def pack(self) -> np.ndarray:
        """The state as one float64 array, for keeping it aside (the day before the last, for amends).

        Why: the state before each customer's last day is kept until the next day, for every customer.
        As :meth:`to_json` lists (about 100 Python floats) that was about 4 KB a customer, the largest
        per-customer item of a worker; one array of the same numbers is about 0.9 KB. Layout: the 8 float
        scalars, ``restarts``, ``n_days``, ``last_day``, whether a ``pending`` day is held, then ``all``,
        ``wd``, ``we`` and, if held, ``pending`` (:data:`_N_OBS` each). Exact: every integer here is far
        below 2**53.

        Examples:
            >>> s = _CustomerShape(); s.all += 0.25; s.n_days, s.last_day, s.all_w = 3, 739_000, 1.5
            >>> row = s.pack()
            >>> row.shape, _CustomerShape.unpack(row).to_json() == s.to_json()
            ((105,), True)
            >>> s.pending = np.full(_N_OBS, 0.5)
            >>> _CustomerShape.unpack(s.pack()).to_json() == s.to_json(), len(s.pack())
            (True, 136)
        """
        head = [self.all_w, self.wd_w, self.we_w, self.log_ratio, self.ratio_w, self.var_m1, self.var_m2,
                self.var_w, self.restarts, self.n_days, self.last_day, 0.0 if self.pending is None else 1.0]
        parts = [np.asarray(head, dtype=float), self.all, self.wd, self.we]
        if self.pending is not None:
            parts.append(self.pending)
        return np.concatenate(parts)

    @classmethod
    def unpack(cls, row: np.ndarray) -> _CustomerShape:
        """Inverse of :meth:`pack`; the arrays are copies (folding updates them in place)."""
        s = cls()
        (s.all_w, s.wd_w, s.we_w, s.log_ratio, s.ratio_w, s.var_m1, s.var_m2, s.var_w) = (float(v) for v in row[:8])
        s.restarts, s.n_days, s.last_day = int(row[8]), int(row[9]), int(row[10])
        at = _PACKED_HEAD
        s.all, s.wd, s.we = (row[at + k * _N_OBS : at + (k + 1) * _N_OBS].copy() for k in range(3))
        s.pending = row[at + 3 * _N_OBS : at + 4 * _N_OBS].copy() if row[11] else None
        return s

    @property
    def established(self) -> bool:
        """A full week seen, weekdays and weekend days (a restart keeps the weekend shape it carried over)."""
        return self.n_days >= ESTABLISHED_DAYS and self.wd_w > 0 and self.we_w > 0


def _packed(v: list[Any]) -> np.ndarray:
    """A checkpoint's state before the last day as :meth:`_CustomerShape.pack` keeps it; checkpoints written
    before that kept the :meth:`_CustomerShape.to_json` lists (their first item is a list)."""
    return _CustomerShape.from_json(v).pack() if v and isinstance(v[0], list) else np.asarray(v, dtype=float)


def _widen(v: Sequence[float]) -> np.ndarray:
    """An observation of the older 7-figure format with its 24 hourly shares spread from the 4 period shares."""
    a = np.asarray(v, dtype=float)
    if len(a) >= _N_OBS:
        return a
    return np.concatenate([a, np.repeat(a[_NIGHT : _EVENING + 1] / 6.0, 6)])


def day_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How different two day observations (or means) are: shares L1 + |log level ratio| + export.

    Examples:
        >>> flat = day_observation(np.full(24, 0.5), None)
        >>> round(day_distance(flat, flat), 6)
        0.0
        >>> night = day_observation(np.array([2.0] * 6 + [0.1] * 18), None)
        >>> round(day_distance(flat, night), 2)
        1.37
    """
    shares = float(np.abs(a[_NIGHT : _EVENING + 1] - b[_NIGHT : _EVENING + 1]).sum())
    level = abs(math.log((a[_TOTAL] + 0.5) / (b[_TOTAL] + 0.5)))
    return shares + level + abs(float(a[_EXPORT] - b[_EXPORT]))


class FeatureProcessor:
    """Folds closed daily profiles into per-customer decayed load-shape features.

    Args:
        halflife_days: half-life of the shape means (1 day).
        slow_halflife_days: half-life of the daily-total mean/variance behind ``variability``.
        shift_threshold: :func:`day_distance` from the usual weekday above which a
            weekday counts as a break; two consecutive breaking weekdays, the second
            closer to the first than to the usual weekday, restart the customer's
            means from those two days
            (``None`` disables). Decayed means alone reach only 75 % of a new
            behaviour after two days; the restart makes a real shift (an EV, solar
            panels) fully visible on the second day, while single odd days and
            weekends (never counted) leave the means alone.

    A day already folded for a customer (same or earlier date) is ignored, so a
    re-delivered window changes nothing.
    """

    def __init__(
        self, halflife_days: float = 1.0, slow_halflife_days: float = 7.0, shift_threshold: float | None = 0.6
    ) -> None:
        self.halflife_days = halflife_days
        self.slow_halflife_days = slow_halflife_days
        self.shift_threshold = shift_threshold
        self._keep = 0.5 ** (1.0 / halflife_days)
        self._keep_var = 0.5 ** (1.0 / slow_halflife_days)
        self.customers: dict[str, _CustomerShape] = {}
        self.rfm: dict[str, tuple[float, float, float]] = {}
        # customer -> (state before the last day (_CustomerShape.pack), its summed import, export (None: no
        # export), meters folded into it)
        self.last_day_parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]] = {}

    def set_rfm(self, customer_id: str, days_since_last: float, frequency: float, monetary_mean: float) -> None:
        """Attach a customer's latest RFM values (from :class:`~processors.rfm.RfmSummary`); they join the features."""
        self.rfm[customer_id] = (days_since_last, frequency, monetary_mean)

    def _restarted(self, st: _CustomerShape, x: np.ndarray) -> bool:
        """Shift rule on a weekday; True when the means were restarted from the last two days.

        A breaking day is held as ``pending`` and kept out of the usual-weekday
        mean, so the next day is compared with the usual weekday *before* the
        break (otherwise the first day of a shift would already pull the
        reference halfway and hide the second).
        """
        thr = self.shift_threshold
        if thr is None or st.wd_w == 0:
            return False
        off = day_distance(x, st.wd)
        if off <= thr:
            st.pending = None
            return False
        if st.pending is None or day_distance(x, st.pending) >= off:
            st.pending = x  # first break, or a break unlike the previous one: wait for confirmation
            return False
        both = (st.pending + x) / 2.0
        if st.we_w > 0:  # the change applies to every day until a weekend shows otherwise
            we = st.we + (both - st.wd)
            hours = np.clip(we[_HOURS:], 0.0, None)
            we[_HOURS:] = hours / hours.sum() if hours.sum() > 0 else 1.0 / 24.0
            st.we = we
        st.all, st.wd = both.copy(), both.copy()
        st.all_w = st.wd_w = 1.0 + self._keep
        st.pending = None
        st.restarts += 1
        return True

    def update(
        self,
        customer_id: str,
        day: date,
        weekday: bool,
        kwh_import: np.ndarray,
        kwh_export: np.ndarray | None = None,
        meter_id: str | None = None,
    ) -> CustomerFeatures | None:
        """Fold one day (24 hourly values) of one meter into its customer's state.

        Returns None for a day already folded from this meter (re-delivery) or
        older than the customer's last day. A second meter of the same customer
        for the last folded day *amends* it: the day is re-folded from the state
        before it with both meters' hours summed, so a customer's features are
        those of the customer's total load whatever the meters' arrival order.
        """
        st = self.customers.get(customer_id)
        if st is None:
            st = self.customers[customer_id] = _CustomerShape()
        ordinal = day.toordinal()
        exp = np.zeros(24) if kwh_export is None else np.asarray(kwh_export, dtype=float)
        imp = np.asarray(kwh_import, dtype=float)
        if ordinal < st.last_day:
            return None
        if ordinal == st.last_day:
            last = self.last_day_parts.get(customer_id)
            if last is None or meter_id is None or meter_id in last[3]:
                return None
            st = self.customers[customer_id] = _CustomerShape.unpack(last[0])
            before = last[0]
            imp, exp, meters = last[1] + imp, exp if last[2] is None else last[2] + exp, (*last[3], meter_id)
        else:
            before, meters = st.pack(), (meter_id or "",)
        self.last_day_parts[customer_id] = (before, imp.copy(), exp.copy() if exp.any() else None, meters)
        restarted = self._fold(st, ordinal, weekday, day_observation(imp, exp))
        return CustomerFeatures(customer_id=customer_id, day=day, n_days=st.n_days, restarted=restarted,
                                values=self.values(customer_id), established=st.established,
                                shape=self.shape(customer_id))

    def _fold(self, st: _CustomerShape, ordinal: int, weekday: bool, x: np.ndarray) -> bool:
        """Fold one day's observation; returns whether the shift rule restarted the means."""
        restarted = weekday and self._restarted(st, x)
        if not restarted:
            st.all_w = self._keep * st.all_w + 1.0
            st.all += (x - st.all) / st.all_w
            if weekday and st.pending is not x:  # a break awaiting confirmation stays out of the usual day
                st.wd_w = self._keep * st.wd_w + 1.0
                st.wd += (x - st.wd) / st.wd_w
        if not weekday:
            st.we_w = self._keep * st.we_w + 1.0
            st.we += (x - st.we) / st.we_w
        if not weekday and st.wd_w > 0:
            obs = math.log(max(st.wd[_TOTAL], 1e-3) / max(x[_TOTAL], 1e-3))
            st.ratio_w = self._keep * st.ratio_w + 1.0
            st.log_ratio += (min(max(obs, -3.0), 3.0) - st.log_ratio) / st.ratio_w
        st.var_w = self._keep_var * st.var_w + 1.0
        st.var_m1 += (x[_TOTAL] - st.var_m1) / st.var_w
        st.var_m2 += (x[_TOTAL] ** 2 - st.var_m2) / st.var_w
        st.n_days += 1
        st.last_day = ordinal
        return restarted

    def values(self, customer_id: str) -> dict[str, float]:
        """Current feature values of a customer (load shape, plus RFM when known)."""
        st = self.customers[customer_id]
        m = st.all
        ratio = math.exp(st.log_ratio)
        var = max(st.var_m2 - st.var_m1**2, 0.0)
        cv = math.sqrt(var) / st.var_m1 if st.var_m1 > 0 else 0.0
        out = {
            "mean_daily_kwh": float(m[_TOTAL]),
            "peak_to_average": float(m[_P2A]),
            "share_night": float(m[_NIGHT]),
            "share_morning": float(m[_MORNING]),
            "share_daytime": float(m[_DAY]),
            "share_evening": float(m[_EVENING]),
            "weekday_weekend_ratio": float(ratio),
            "export_share": float(m[_EXPORT]),
            "variability": float(cv),
        }
        rfm = self.rfm.get(customer_id)
        if rfm is not None:
            out.update(zip(RFM_FEATURES, rfm, strict=True))
        return out

    def shape(self, customer_id: str) -> dict[str, float]:
        """The clustering features of a customer (:data:`CLUSTER_FEATURES`, see there for the units).

        Before the first weekday the weekday shape is the all-days shape; before the first weekend day
        the weekend shape is the weekday shape.
        """
        st = self.customers[customer_id]
        wd = st.wd[_HOURS:] if st.wd_w > 0 else st.all[_HOURS:]
        we = st.we[_HOURS:] if st.we_w > 0 else wd
        out = {"log10_daily_kwh": math.log10(max(float(st.all[_TOTAL]), 0.01))}
        out.update(zip(WEEKDAY_SHAPE, wd.tolist(), strict=True))
        out.update(zip(WEEKEND_SHAPE, we.tolist(), strict=True))
        out["weekday_weekend_ratio"] = math.exp(st.log_ratio)
        out["export_share"] = float(st.all[_EXPORT])
        return out

    def current(self, customer_id: str) -> CustomerFeatures:
        """A customer's features as of its last folded day."""
        st = self.customers[customer_id]
        return CustomerFeatures(customer_id=customer_id, day=date.fromordinal(st.last_day), n_days=st.n_days,
                                values=self.values(customer_id), established=st.established,
                                shape=self.shape(customer_id))

    def process(self, batch: Iterable[DailyProfile]) -> list[CustomerFeatures]:
        """Fold a batch of closed days; one output per profile that changed a customer's features.

        Days of one customer should arrive in date order (the stream closes
        windows in order); an older day is skipped, a re-delivered one ignored,
        another meter's profile for the customer's last day amends that day.
        """
        out: list[CustomerFeatures] = []
        for p in sorted(batch, key=lambda p: p.day):
            exp = np.asarray(p.kwh_export) if p.kwh_export is not None else None
            r = self.update(p.customer_id, p.day, bool(p.weekday), np.asarray(p.kwh_import), exp, p.meter_id)
            if r is not None:
                out.append(r)
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "halflife_days": self.halflife_days,
            "slow_halflife_days": self.slow_halflife_days,
            "shift_threshold": self.shift_threshold,
            "customers": {c: s.to_json() for c, s in sorted(self.customers.items())},
            "rfm": {c: list(v) for c, v in sorted(self.rfm.items())},
            "last_day_parts": {c: [v[0].tolist(), v[1].tolist(), None if v[2] is None else v[2].tolist(), list(v[3])]
                               for c, v in sorted(self.last_day_parts.items())},
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> FeatureProcessor:
        """Inverse of :meth:`snapshot`."""
        p = cls(state["halflife_days"], state["slow_halflife_days"], state["shift_threshold"])
        p.customers = {c: _CustomerShape.from_json(d) for c, d in state["customers"].items()}
        p.rfm = {c: (float(v[0]), float(v[1]), float(v[2])) for c, v in state["rfm"].items()}
        p.last_day_parts = {
            c: (_packed(v[0]), np.asarray(v[1], dtype=float), None if v[2] is None else np.asarray(v[2], dtype=float),
                tuple(str(m) for m in v[3]))
            for c, v in state["last_day_parts"].items()
        }
        return p


def shape_from_day_values(values: Mapping[str, float]) -> dict[str, float]:
    """Clustering features approximated from the day-level ``values`` (what the API stores per customer).

    ``mean_daily_kwh`` gives ``log10_daily_kwh``; each of the four 6-hour shares is spread evenly over
    its hours, for weekdays and weekends alike (the stored values do not tell them apart). Only the
    features the inputs determine are returned.

    Examples:
        >>> s = shape_from_day_values({"mean_daily_kwh": 10.0, "share_night": 0.6, "share_morning": 0.1,
        ...                            "share_daytime": 0.1, "share_evening": 0.2})
        >>> s["log10_daily_kwh"], round(s["weekday_h00"], 3), round(s["weekend_h23"], 4)
        (1.0, 0.1, 0.0333)
    """
    out: dict[str, float] = {}
    if "mean_daily_kwh" in values:
        out["log10_daily_kwh"] = math.log10(max(float(values["mean_daily_kwh"]), 0.01))
    periods = ("share_night", "share_morning", "share_daytime", "share_evening")
    if all(p in values for p in periods):
        hours = [float(values[p]) / 6.0 for p in periods for _ in range(6)]
        out.update(zip(WEEKDAY_SHAPE, hours, strict=True))
        out.update(zip(WEEKEND_SHAPE, hours, strict=True))
    return out


class RunningScaler:
    """Mergeable online standard scaler: per-feature count, sum and sum of squares.

    ``decay(f)`` multiplies all three by ``f`` (forgetting old data, used by the
    model owner between versions); ``merge`` adds them, so partition scalers
    combine exactly.

    Examples:
        >>> a, b = RunningScaler(2), RunningScaler(2)
        >>> a.learn(np.array([[0.0, 10.0], [2.0, 10.0]]))
        >>> b.learn(np.array([[4.0, 10.0]]))
        >>> m = RunningScaler.merged([a, b])
        >>> m.mean.tolist(), m.std.round(3).tolist()   # zero variance -> std 1 (no blow-up)
        ([2.0, 10.0], [1.633, 1.0])
        >>> m.transform(np.array([[4.0, 10.0]])).round(3).tolist()
        [[1.225, 0.0]]
    """

    def __init__(self, n_features: int) -> None:
        self.n = 0.0
        self.sum = np.zeros(n_features)
        self.sumsq = np.zeros(n_features)

    def learn(self, x: np.ndarray) -> None:
        """Add a batch of rows (n x d)."""
        x = np.atleast_2d(x)
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sumsq += (x * x).sum(axis=0)

    @property
    def mean(self) -> np.ndarray:
        """Per-feature mean (0 when empty)."""
        return self.sum / self.n if self.n > 0 else np.zeros_like(self.sum)

    @property
    def std(self) -> np.ndarray:
        """Per-feature standard deviation; features without spread get 1 (identity scaling)."""
        if self.n <= 0:
            return np.ones_like(self.sum)
        var = np.maximum(self.sumsq / self.n - self.mean**2, 0.0)
        sd = np.sqrt(var)
        return np.where(sd > 1e-9, sd, 1.0)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise rows with the current mean and std."""
        return (x - self.mean) / self.std

    def decay(self, factor: float) -> None:
        """Down-weight everything learnt so far by ``factor`` in (0, 1]."""
        self.n *= factor
        self.sum *= factor
        self.sumsq *= factor

    @classmethod
    def merged(cls, scalers: Iterable[RunningScaler]) -> RunningScaler:
        """Exact combination of scalers over disjoint data."""
        xs = list(scalers)
        out = cls(len(xs[0].sum))
        for s in xs:
            out.n += s.n
            out.sum += s.sum
            out.sumsq += s.sumsq
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"n": self.n, "sum": self.sum.tolist(), "sumsq": self.sumsq.tolist()}

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> RunningScaler:
        """Inverse of :meth:`snapshot`."""
        s = cls(len(state["sum"]))
        s.n = float(state["n"])
        s.sum = np.asarray(state["sum"], dtype=float)
        s.sumsq = np.asarray(state["sumsq"], dtype=float)
        return s
