"""Event-time tumbling windows kept in compact numpy rings, closed by watermark or timer.

Why not Faust windowed tables: they cost one table update (and changelog
record) per event and close a window only when a later event for the same key
arrives, so a quiet meter's window never closes. Here:

* state is a few ``(rows, ring)`` arrays per window size, where a *row* is a
  key (a meter, a region) local to this partition and the *ring* holds the
  windows of that key that can still receive data; a reading adds into
  ``row * ring + window_index % ring`` with ``np.add.at``;
* the **frontier** ``C`` says every window ending at or before ``C`` is closed
  and emitted (revision 0). It advances to the watermark (max event time −
  ``close_after_s``) after each batch and, through :meth:`EventTimeWindows.close_until`
  / :meth:`EventTimeWindows.on_timer`, from a wall-clock timer when no event
  comes;
* a reading whose smallest window already closed is a *late* reading. Classes
  that know meters (:class:`~processors.windows.ConsumptionWindows`) judge it
  against its own meter (``allowed_lateness_s``, default 48 h) and, if it still
  counts, emit every window it falls in again with the next revision
  (:mod:`processors.windows.revisions`); otherwise, and always in the bare
  base class, it is rejected ``too_late``. All sizes must be multiples of the
  smallest, so a reading is either counted in every window size or in none:
  totals of every size stay consistent;
* the ring of a size ``s`` has ``close_after // s + 2`` windows, which
  is exactly the number that can be open at once. A batch spanning more time
  (a backfill, a head-end uploading hours at once) is processed in event-time
  order in chunks, advancing the frontier between chunks as if the readings
  had arrived in order, which gives the same outputs as arrival in order.

Each window is emitted once when it closes (revision 0): it leaves the ring,
and the frontier only moves forward (it is part of the snapshot); it is
emitted again only as a correction, with a higher revision.

References:
    Akidau et al., "The Dataflow Model", PVLDB 8(12), 2015 (event time,
    watermarks, allowed lateness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from processors.columns import (
    F64,
    I64,
    ReadingColumns,
    Reject,
    grow_rows,
    pack_array,
    reading_rejects,
    unpack_array,
)

NONE = np.iinfo(np.int64).min
"""Sentinel for "no window in this slot" and "no frontier yet"."""

WindowKind = Literal["meter", "region"]


class WindowConfig(BaseModel):
    """Window sizes and lateness, settable from settings/env like any pydantic model."""

    model_config = ConfigDict(frozen=True)

    meter_sizes_s: tuple[int, ...] = (900, 3600, 86400)
    region_size_s: int | None = 3600
    close_after_s: int = Field(
        default=3600,
        ge=0,
        description="a window closes (first emission, revision 0) once the partition's event clock is this far "
        "past its end: readings reordered within it never cause a revision",
    )
    allowed_lateness_s: int = Field(
        default=172_800,
        ge=0,
        description="a reading whose window already closed still counts while its interval starts less than this "
        "before its own meter's newest interval, and its window closed less than this ago; the windows it falls "
        "in are emitted again with the next revision. 48 h by default: head ends upload in blocks, some a day "
        "late after a communication fault. 0: no corrections (every reading of a closed window is too_late)",
    )
    timer_delay_s: int = Field(
        default=900,
        ge=0,
        description="on_timer(now) closes up to now - delay - lateness: a reading for an interval starting at t "
        "is sent when the interval ends, so its event time lags the wall clock by about one interval",
    )
    max_future_s: int | None = Field(
        default=7 * 86_400,
        description="reject readings (reason in_future) whose interval starts more than this after the broker "
        "timestamp; None: no limit. Why a default: one valid reading decades ahead would move the partition's "
        "window frontier there, and every later on-time reading would be too late, for good",
    )
    price_per_kwh: dict[str, float] | None = Field(
        default=None,
        description="revenue = kWh imported × price of the meter's tariff ('prepaid'/'postpaid'); "
        "None: revenue only from add_revenue() (purchases)",
    )

    @model_validator(mode="after")
    def _sizes_nest(self) -> Self:
        sizes = [*self.meter_sizes_s, *([self.region_size_s] if self.region_size_s else [])]
        if not sizes or min(sizes) <= 0:
            raise ValueError("window sizes must be positive and at least one must be configured")
        if any(s % min(sizes) for s in sizes):
            raise ValueError("every window size must be a multiple of the smallest one")
        return self

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> WindowConfig:
        """The configuration a checkpoint saved; one written before corrections (no ``close_after_s``) meant
        by ``allowed_lateness_s`` what is now ``close_after_s``, and gets the default lateness."""
        if "close_after_s" not in data and "allowed_lateness_s" in data:
            data = {**{k: v for k, v in data.items() if k != "allowed_lateness_s"},
                    "close_after_s": data["allowed_lateness_s"]}  # fmt: skip
        return cls.model_validate(data)

    @property
    def smallest_s(self) -> int:
        return min([*self.meter_sizes_s, *([self.region_size_s] if self.region_size_s else [])])


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nan_none(values: list[float]) -> list[float | None]:
    return [None if v != v else v for v in values]  # v != v only for NaN


def size_label(size_s: int) -> str:
    """``900`` → ``'15m'``, ``3600`` → ``'1h'``, ``86400`` → ``'1d'`` (low-cardinality metric label).

    Examples:
        >>> [size_label(s) for s in (900, 3600, 86400, 45)]
        ['15m', '1h', '1d', '45s']
    """
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if size_s % n == 0:
            return f"{size_s // n}{unit}"
    return f"{size_s}s"


@dataclass(slots=True)
class ClosedWindows:
    """Windows of one size that closed together, as columns (one entry per window).

    ``expected`` is the number of readings a complete window holds (window size
    over the meter's interval length), ``-1`` where unknown (regional totals).
    Demand figures are kW of imported energy: ``kwh_import / interval hours``.
    """

    kind: WindowKind
    size_s: int
    keys: list[str]
    start: I64
    count: I64
    expected: I64
    kwh_in: F64
    kwh_out: F64
    kw_min: F64
    kw_max: F64
    kw_mean: F64
    revenue: F64
    revision: I64 | None = None
    """0 for the first emission of a window, n for its n-th correction; ``None``: all 0."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def revisions(self) -> I64:
        """:attr:`revision` as an array (zeros when unset)."""
        return np.zeros(len(self.keys), np.int64) if self.revision is None else self.revision

    def take(self, rows: npt.NDArray[np.bool_] | slice) -> ClosedWindows:
        """The windows where the mask ``rows`` is true, or the slice ``rows`` of them (same kind and size).

        Examples:
            >>> import numpy as np
            >>> one = np.ones(3, np.int64)
            >>> cw = ClosedWindows("meter", 900, ["M1", "M2", "M3"], np.array([0, 0, 900]), one, one, np.ones(3),
            ...                    np.zeros(3), np.ones(3), np.ones(3), np.ones(3), np.zeros(3))
            >>> cw.take(np.array([True, False, True])).keys, cw.take(slice(1, 9)).keys
            (['M1', 'M3'], ['M2', 'M3'])
        """
        arrays: dict[str, Any] = {f: getattr(self, f)[rows] for f in _CLOSED_ARRAYS}
        if isinstance(rows, slice):
            keys = self.keys[rows]
        else:
            keys = [k for k, keep in zip(self.keys, rows.tolist(), strict=True) if keep]
        return ClosedWindows(self.kind, self.size_s, keys, revision=self.revisions[rows], **arrays)

    @property
    def end(self) -> I64:
        return self.start + self.size_s

    @property
    def completeness(self) -> F64:
        """``count / expected``; NaN where ``expected`` is unknown."""
        with np.errstate(divide="ignore", invalid="ignore"):
            out: F64 = np.where(self.expected > 0, self.count / np.maximum(self.expected, 1), np.nan)
        return out

    def to_records(self, lo: int = 0, hi: int | None = None) -> list[dict[str, Any]]:
        """Windows ``lo:hi`` as one JSON-ready dict each, the ``consumption.windows`` payload.

        Column-wise: one ``tolist`` per array and one ISO string per distinct
        window start, so the cost is a dict per window (closed windows are
        about as many as readings at 15-minute intervals). A slice lets a
        caller hold a few thousand dicts at a time when a day closes for every
        meter of a partition at once (:meth:`IngestHandler._emit
        <stream.pipelines.ingest.IngestHandler._emit>`).

        Examples:
            >>> import numpy as np
            >>> one = np.ones(3, np.int64)
            >>> cw = ClosedWindows("meter", 900, ["M1", "M2", "M3"], np.array([0, 0, 900]), one, one, np.ones(3),
            ...                    np.zeros(3), np.ones(3), np.ones(3), np.ones(3), np.zeros(3))
            >>> [(r["key"], r["window_start"]) for r in cw.to_records(1)]
            [('M2', '1970-01-01T00:00:00Z'), ('M3', '1970-01-01T00:15:00Z')]
            >>> cw.to_records(0, 2) + cw.to_records(2, 9) == cw.to_records()
            True
        """
        if lo or hi is not None:
            return self.take(slice(lo, hi)).to_records()
        size = self.size_s
        starts = self.start.tolist()
        iso = {s: (_iso(s), _iso(s + size)) for s in set(starts)}
        counts = self.count.tolist()
        expected = [e if e > 0 else None for e in self.expected.tolist()]
        comp = _nan_none(self.completeness.tolist())
        kw_min, kw_max = _nan_none(self.kw_min.tolist()), _nan_none(self.kw_max.tolist())
        kw_mean = [m if c else None for m, c in zip(self.kw_mean.tolist(), counts, strict=True)]
        kind, label = self.kind, size_label(size)
        out = [
            {
                "kind": kind, "key": key, "window": label, "window_start": iso[s][0], "window_end": iso[s][1],
                "kwh_in": ki, "kwh_out": ko, "readings": c, "expected": e, "completeness": cp,
                "min_kw": lo, "max_kw": hi, "mean_kw": me, "revision": rv,
            }
            for key, s, ki, ko, c, e, cp, lo, hi, me, rv in zip(
                self.keys, starts, self.kwh_in.tolist(), self.kwh_out.tolist(), counts, expected, comp,
                kw_min, kw_max, kw_mean, self.revisions.tolist(), strict=True,
            )
        ]  # fmt: skip
        if kind == "region":
            for rec, rev in zip(out, self.revenue.tolist(), strict=True):
                rec["revenue"] = rev
        return out

    def to_columns(self, lo: int = 0, hi: int | None = None) -> dict[str, Any]:
        """Windows ``lo:hi`` as JSON-ready columns: the body of a ``WindowBatch`` (``consumption.windows``).

        Why columns: at 15-minute intervals about 1.25 windows close per reading,
        and a dict per window costs more than the reading's whole processing;
        columns serialise straight from the arrays (``orjson`` with
        ``OPT_SERIALIZE_NUMPY``; NaN becomes ``null``). Same values and meaning as
        :meth:`to_records`, which :func:`stream.schemas.window_records` rebuilds.

        Examples:
            >>> import numpy as np
            >>> one = np.ones(2, np.int64)
            >>> cw = ClosedWindows("meter", 900, ["M1", "M2"], np.array([0, 900]), one, one, np.array([.25, .5]),
            ...                    np.zeros(2), np.array([1., 2.]), np.array([1., 2.]), np.array([1., 2.]), np.zeros(2))
            >>> cols = cw.to_columns()
            >>> cols["key"], cols["window_start"], cols["completeness"].tolist()
            (['M1', 'M2'], ['1970-01-01T00:00:00Z', '1970-01-01T00:15:00Z'], [1.0, 1.0])
        """
        hi = len(self) if hi is None else min(hi, len(self))
        size = self.size_s
        start = self.start[lo:hi]
        count, expected = self.count[lo:hi], self.expected[lo:hi]
        first, last = int(start.min()), int(start.max())
        if first == last:
            n = hi - lo
            starts, ends = [_iso(first)] * n, [_iso(first + size)] * n
        else:
            distinct = np.unique(start).tolist()
            listed = start.tolist()
            starts = list(map({v: _iso(v) for v in distinct}.__getitem__, listed))
            ends = list(map({v: _iso(v + size) for v in distinct}.__getitem__, listed))
        with np.errstate(divide="ignore", invalid="ignore"):
            completeness = np.where(expected > 0, count / np.maximum(expected, 1), np.nan)
        return {
            "kind": self.kind,
            "window": size_label(size),
            "key": self.keys[lo:hi],
            "window_start": starts,
            "window_end": ends,
            "kwh_in": self.kwh_in[lo:hi],
            "kwh_out": self.kwh_out[lo:hi],
            "readings": count,
            "expected": expected if bool((expected > 0).all()) else [e if e > 0 else None for e in expected.tolist()],
            "completeness": completeness,
            "min_kw": self.kw_min[lo:hi],
            "max_kw": self.kw_max[lo:hi],
            "mean_kw": np.where(count > 0, self.kw_mean[lo:hi], np.nan),
            "revision": self.revisions[lo:hi],
        }


def merge_closed(parts: Sequence[ClosedWindows]) -> list[ClosedWindows]:
    """Concatenate closings of the same kind and size (first-appearance order kept)."""
    groups: dict[tuple[str, int], list[ClosedWindows]] = {}
    for p in parts:
        groups.setdefault((p.kind, p.size_s), []).append(p)
    out = []
    for (_kind, size), ps in groups.items():
        if len(ps) == 1:
            out.append(ps[0])
            continue
        cat: dict[str, Any] = {f: np.concatenate([getattr(p, f) for p in ps]) for f in _CLOSED_ARRAYS}
        revision = None if all(p.revision is None for p in ps) else np.concatenate([p.revisions for p in ps])
        out.append(ClosedWindows(kind=ps[0].kind, size_s=size, keys=[k for p in ps for k in p.keys],
                                 revision=revision, **cat))
    return out


_CLOSED_ARRAYS = ("start", "count", "expected", "kwh_in", "kwh_out", "kw_min", "kw_max", "kw_mean", "revenue")


class WindowRing:
    """Open tumbling windows of one size for many keys: ``(rows, ring)`` arrays.

    The caller guarantees that, per row, the windows added lie within ``ring``
    consecutive window indices not yet closed (see :class:`EventTimeWindows`);
    a violation is a bug and raises instead of silently merging two windows.
    """

    FLOATS = ("kwh_in", "kwh_out", "kw_sum", "revenue", "kw_min", "kw_max")
    IDENTITY = {"kwh_in": 0.0, "kwh_out": 0.0, "kw_sum": 0.0, "revenue": 0.0, "kw_min": np.inf, "kw_max": -np.inf}

    def __init__(self, size_s: int, ring: int, kind: WindowKind) -> None:
        self.size_s = size_s
        self.ring = ring
        self.kind = kind
        self.closed_index = NONE  # largest frontier // size already scanned for closing
        self.start = np.full((0, ring), NONE, np.int64)
        self.count = np.zeros((0, ring), np.int32)
        self.interval_s = np.zeros((0, ring), np.int32)
        # Only regional rings carry revenue: per-meter state stays as small as possible.
        self.float_names = self.FLOATS if kind == "region" else tuple(f for f in self.FLOATS if f != "revenue")
        self.floats = {f: np.full((0, ring), self.IDENTITY[f], np.float64) for f in self.float_names}

    def ensure_rows(self, n: int) -> None:
        if len(self.start) >= n:
            return
        self.start = grow_rows(self.start, n, NONE)
        self.count = grow_rows(self.count, n, 0)
        self.interval_s = grow_rows(self.interval_s, n, 0)
        for f in self.float_names:
            self.floats[f] = grow_rows(self.floats[f], n, self.IDENTITY[f])

    def add(self, rows: I64, t: I64, interval_s: I64, kwh_in: F64, kwh_out: F64, kw: F64, revenue: F64 | None) -> None:
        """Accumulate readings (already accepted, sorted or not) into their windows."""
        if not len(rows):
            return
        w = t // self.size_s
        wstart = w * self.size_s
        flat = rows * self.ring + w % self.ring
        st = self.start.reshape(-1)
        cur = st[flat]
        fresh = cur == NONE
        if not fresh.all() and (cur[~fresh] != wstart[~fresh]).any():
            raise RuntimeError("window ring collision: more open windows than the ring holds")
        if fresh.any():
            st[flat[fresh]] = wstart[fresh]
            self.interval_s.reshape(-1)[flat[fresh]] = interval_s[fresh]
        np.add.at(self.count.reshape(-1), flat, 1)
        fl = self.floats
        np.add.at(fl["kwh_in"].reshape(-1), flat, kwh_in)
        np.add.at(fl["kwh_out"].reshape(-1), flat, kwh_out)
        np.add.at(fl["kw_sum"].reshape(-1), flat, kw)
        np.minimum.at(fl["kw_min"].reshape(-1), flat, kw)
        np.maximum.at(fl["kw_max"].reshape(-1), flat, kw)
        if revenue is not None and "revenue" in fl:
            np.add.at(fl["revenue"].reshape(-1), flat, revenue)

    def add_revenue(self, rows: I64, t: I64, amounts: F64) -> None:
        """Add revenue only (purchases): opens the window if needed, leaves reading statistics alone."""
        if not len(rows):
            return
        w = t // self.size_s
        wstart = w * self.size_s
        flat = rows * self.ring + w % self.ring
        st = self.start.reshape(-1)
        cur = st[flat]
        fresh = cur == NONE
        if not fresh.all() and (cur[~fresh] != wstart[~fresh]).any():
            raise RuntimeError("window ring collision: more open windows than the ring holds")
        st[flat[fresh]] = wstart[fresh]
        np.add.at(self.floats["revenue"].reshape(-1), flat, amounts)

    def close(self, frontier: int, keys: Sequence[str], *, force: bool = False) -> ClosedWindows | None:
        """Remove and return every window ending at or before ``frontier`` (sorted by start, then row)."""
        idx = frontier // self.size_s
        if not force and idx <= self.closed_index:
            return None
        self.closed_index = max(self.closed_index, idx)
        n = len(keys)
        st = self.start[:n]
        mask = (st != NONE) & (st <= frontier - self.size_s)
        if not mask.any():
            return None
        r, k = np.nonzero(mask)
        starts = st[r, k]
        order = np.lexsort((r, starts))
        r, k, starts = r[order], k[order], starts[order]
        count = self.count[r, k].astype(np.int64)
        interval = self.interval_s[r, k]
        fl = {f: a[r, k] for f, a in self.floats.items()}
        expected = np.where(interval > 0, np.maximum(self.size_s // np.maximum(interval, 1), 1), -1)
        if self.kind == "region":
            expected = np.full(len(r), -1, np.int64)
        out = ClosedWindows(
            kind=self.kind,
            size_s=self.size_s,
            keys=[keys[i] for i in r.tolist()],
            start=starts,
            count=count,
            expected=expected.astype(np.int64),
            kwh_in=fl["kwh_in"],
            kwh_out=fl["kwh_out"],
            kw_min=np.where(count > 0, fl["kw_min"], np.nan),
            kw_max=np.where(count > 0, fl["kw_max"], np.nan),
            kw_mean=fl["kw_sum"] / np.maximum(count, 1),
            revenue=fl["revenue"] if "revenue" in fl else np.zeros(len(r), np.float64),
            extra={"rows": r},
        )
        self.start[r, k] = NONE
        self.count[r, k] = 0
        self.interval_s[r, k] = 0
        for f, a in self.floats.items():
            a[r, k] = self.IDENTITY[f]
        return out

    def snapshot(self, n_rows: int) -> dict[str, Any]:
        """Occupied slots only (sparse), arrays packed bit-exact."""
        r, k = np.nonzero(self.start[:n_rows] != NONE)
        return {
            "size_s": self.size_s,
            "ring": self.ring,
            "kind": self.kind,
            "closed_index": None if self.closed_index == NONE else int(self.closed_index),
            "row": pack_array(r.astype(np.int64)),
            "slot": pack_array(k.astype(np.int64)),
            "start": pack_array(self.start[r, k]),
            "count": pack_array(self.count[r, k]),
            "interval_s": pack_array(self.interval_s[r, k]),
            **{f: pack_array(a[r, k]) for f, a in self.floats.items()},
        }

    @classmethod
    def restore(cls, state: dict[str, Any], n_rows: int) -> WindowRing:
        ring = cls(state["size_s"], state["ring"], state["kind"])
        ring.closed_index = NONE if state["closed_index"] is None else state["closed_index"]
        ring.ensure_rows(n_rows)
        r = unpack_array(state["row"])
        k = unpack_array(state["slot"])
        ring.start[r, k] = unpack_array(state["start"])
        ring.count[r, k] = unpack_array(state["count"])
        ring.interval_s[r, k] = unpack_array(state["interval_s"])
        for f, a in ring.floats.items():
            a[r, k] = unpack_array(state[f])
        return ring


@dataclass(slots=True)
class WindowOutput:
    """What a windows processor returns for one batch.

    ``accepted`` are the readings counted in the windows (pass them on to the
    health rules); ``rejects`` the ``too_late`` / ``in_future`` ones for the
    dead-letter topic; ``closed`` every window that closed or was corrected, by
    size (a correction has ``revision`` > 0).
    """

    accepted: ReadingColumns
    rejects: list[Reject]
    closed: list[ClosedWindows]
    too_late: int = 0
    in_future: int = 0
    corrected: int = 0
    """late readings that still counted (their closed windows were emitted again, revised)"""


class EventTimeWindows:
    """Frontier, watermark, lateness and chunking shared by the meter and regional windows.

    Subclasses declare their rings and implement :meth:`_add` (route a chunk of
    accepted readings into the rings) and :meth:`_keys` (row → key names).
    """

    def __init__(self, config: WindowConfig | None = None) -> None:
        self.config = config or WindowConfig()
        self.frontier = NONE
        """Every window ending at or before this epoch second is closed (``NONE``: nothing yet)."""
        self.max_event = NONE
        self.rings: list[WindowRing] = []

    @staticmethod
    def ring_length(size_s: int, close_after_s: int) -> int:
        """Windows of one key that can be open at once: ``close_after // size + 2``."""
        return close_after_s // size_s + 2

    @property
    def watermark(self) -> int | None:
        """Max event time seen minus ``close_after_s`` (``None`` before the first reading)."""
        return None if self.max_event == NONE else int(self.max_event - self.config.close_after_s)

    # -- hooks --------------------------------------------------------------------
    def _add(self, batch: ReadingColumns, index: I64) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _keys(self, ring: WindowRing) -> Sequence[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- processing -----------------------------------------------------------------
    def _late(self, batch: ReadingColumns, index: I64) -> tuple[npt.NDArray[np.bool_], str]:
        """Which of the late readings ``index`` (their window closed) are too late, and why.

        The base class has no per-meter state: every late reading is too late.
        """
        return np.ones(len(index), np.bool_), f"window already closed (frontier {_iso(int(self.frontier))})"

    def _correct(self, batch: ReadingColumns, index: I64) -> list[ClosedWindows]:  # pragma: no cover - abstract
        """Count late readings that still count; return the corrected windows (next revision)."""
        raise NotImplementedError

    def _observe(self, batch: ReadingColumns, index: I64) -> None:
        """Hook: readings ``index`` passed the future check (subclasses track each meter's newest reading)."""

    def _closing(self, ring: WindowRing, previous_index: int, closed: ClosedWindows | None) -> ClosedWindows | None:
        """Hook: ``ring`` just closed ``closed`` (its windows before ``previous_index`` had closed already)."""
        return closed

    # -- processing -----------------------------------------------------------------
    def process(self, batch: ReadingColumns) -> WindowOutput:
        """Count a batch of (deduplicated) readings; return closed and corrected windows and late rejects."""
        t = batch.interval_start
        smallest = self.config.smallest_s
        ok = np.ones(len(batch), np.bool_)
        future = np.zeros(len(batch), np.bool_)
        if self.config.max_future_s is not None:
            known = batch.append_ms > 0  # 0 or -1: no broker time (1970 is none either)
            future = known & (t > batch.append_ms // 1000 + self.config.max_future_s)
            ok &= ~future
        late = np.zeros(len(batch), np.bool_)
        correct = np.zeros(0, np.int64)
        rejects: list[Reject] = []
        if self.frontier != NONE:
            behind = ok & ((t // smallest + 1) * smallest <= self.frontier)
            if behind.any():
                index = np.flatnonzero(behind)
                too_late, why = self._late(batch, index)
                late[index[too_late]] = True
                correct = index[~too_late]
                ok &= ~behind
                if too_late.any():
                    rejects += reading_rejects(batch, index[too_late].tolist(), "too_late", why)
        if future.any():
            rejects += reading_rejects(
                batch, np.flatnonzero(future).tolist(), "in_future",
                f"interval starts more than {self.config.max_future_s}s after the broker timestamp",
            )  # fmt: skip
        # a meter's newest reading moves only now: a late reading is judged against what its meter had sent
        # before this batch (as on the wire), not against readings that came after it in the same poll
        self._observe(batch, np.flatnonzero(~future))
        closed: list[ClosedWindows] = self._correct(batch, correct) if len(correct) else []
        idx = np.flatnonzero(ok)
        if len(idx):
            idx = idx[np.argsort(t[idx], kind="stable")]
            ts = t[idx]
            delay = self.config.close_after_s
            if self.frontier == NONE:
                self.frontier = int(ts[0] - delay)
            pos = 0
            while pos < len(idx):
                limit = min((self.frontier // r.size_s + r.ring) * r.size_s for r in self.rings)
                end = int(np.searchsorted(ts, limit, "left"))
                if end == pos:  # the next reading is beyond the rings: it moves the watermark first
                    closed += self._advance(int(ts[pos]) - delay)
                    continue
                self._add(batch, idx[pos:end])
                pos = end
            self.max_event = max(self.max_event, int(ts[-1]))
            closed += self._advance(self.max_event - delay)
        counted = ~(late | future)
        accepted = batch if counted.all() else batch.take(counted)
        return WindowOutput(accepted, rejects, merge_closed(closed), int(late.sum()), int(future.sum()),
                            corrected=len(correct))

    def _advance(self, frontier: int) -> list[ClosedWindows]:
        if frontier <= self.frontier:
            return []
        self.frontier = frontier
        out = []
        for ring in self.rings:
            previous = ring.closed_index
            c = self._closing(ring, previous, ring.close(frontier, self._keys(ring)))
            if c is not None and len(c):
                out.append(c)
        return out

    def _close_public(self, frontier: int) -> list[ClosedWindows]:
        return merge_closed(self._advance(frontier))

    def close_until(self, frontier: int) -> list[ClosedWindows]:
        """Close every window ending at or before ``frontier`` (epoch s); later readings for them are late.

        The timer path: call it with a watermark derived from the wall clock
        (see :meth:`on_timer`) so windows close although no event arrives.
        """
        return self._close_public(int(frontier))

    def on_timer(self, now: float) -> list[ClosedWindows]:
        """Close windows by wall clock: ``close_until(now - timer_delay - close_after)``."""
        return self.close_until(int(now) - self.config.timer_delay_s - self.config.close_after_s)

    def flush(self) -> list[ClosedWindows]:
        """Close every open window (end of a backfill or of a test run)."""
        ends = [int(r.start.max(initial=NONE)) + r.size_s for r in self.rings if r.start.max(initial=NONE) != NONE]
        if not ends:
            return []
        return self._close_public(max(ends))

    # -- snapshot -----------------------------------------------------------------
    def _base_snapshot(self, n_rows: dict[str, int]) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "frontier": None if self.frontier == NONE else int(self.frontier),
            "max_event": None if self.max_event == NONE else int(self.max_event),
            "rings": [r.snapshot(n_rows[r.kind]) for r in self.rings],
        }

    def _base_restore(self, state: dict[str, Any], n_rows: dict[str, int]) -> None:
        self.frontier = NONE if state["frontier"] is None else state["frontier"]
        self.max_event = NONE if state["max_event"] is None else state["max_event"]
        self.rings = [WindowRing.restore(s, n_rows[s["kind"]]) for s in state["rings"]]


def demand_kw(batch: ReadingColumns, index: I64) -> F64:
    """Mean import power over each reading's interval, kW."""
    out: F64 = batch.kwh_import[index] * (60.0 / batch.interval_minutes[index])
    return out


BoolArray = npt.NDArray[np.bool_]
