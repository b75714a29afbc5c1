"""The stored format of a customer's ``rfm``, ``features`` and ``hours`` values in ``{ns}:cust:{id}``: one codec.

Every writer (:class:`stream.state.segments.MembershipStore`, the API benchmark's
filler) encodes, and every reader (``stream/web``, the benchmarks, the test
harness) decodes, through this module, so the layout is defined here only.

Why a compact format: a Redis hash stays in its compact ``listpack`` encoding
only while every field and value is at most ``hash-max-listpack-value`` bytes
(64 on a stock server); one longer value turns the whole hash into a
``hashtable`` (a dict entry and two allocations per field). The JSON values of
version 0 (``rfm`` ~320 B, ``features`` ~290 B) made every customer hash a
hashtable of ~850 B. Version 1 keeps every value within 63 bytes, so the hash
is a listpack on a stock Redis.

Version 0 (written by earlier versions, still read; also written as a
fallback, see below) — UTF-8 JSON objects, starting with ``{``:

* ``rfm``: the RFM summary (:class:`processors.rfm.state.RfmSummary`) plus
  ``r_score``, ``f_score``, ``m_score``, ``segment``, ``segment_name``;
* ``features``: ``{"day": "YYYY-MM-DD", name: value, ...}``.

Version 1 — binary, starting with the byte ``0x01``; integers are LEB128
varints (``uvar``; ``svar`` = zigzag-coded signed), floats IEEE-754 float64
little-endian (``f64``):

``rfm`` (one field, 40-60 B):

====================  ===========================================================
``0x01``              version
``flags`` (1 B)       bit 0 first purchase, 1 last purchase, 2 ``days_since_last``,
                      3 the three scores, 4 ``segment`` present
``first`` svar        first purchase, microseconds since 1970-01-01 UTC (bit 0)
``last`` svar         last purchase minus first purchase, µs (bit 1; bit 0 required)
``dsl`` f64           ``days_since_last`` (bit 2)
uvar × 6              ``T_days``, ``recency_days``, ``n_purchases``,
                      ``n_purchase_days``, ``n_viewed``, ``n_processed``
svar                  total spend in micro-units (``total_spend`` × 10⁶)
3 B                   ``r_score``, ``f_score``, ``m_score`` (bit 3)
rest                  ``segment`` id, UTF-8 (bit 4)
====================  ===========================================================

Version 2 (``0x02``, written now) is version 1 with one more ``svar`` after
the total spend: the spend on the first purchase day in micro-units
(``first_day_spend`` × 10⁶), from which ``monetary_value`` (lifetimes' mean of
the repeat purchase days) is derived. Version-1 values (and values without
``first_day_spend``, e.g. version 0 re-encoded) have neither key.

Derived on decode, not stored: ``customer_id`` (from the key),
``total_spend`` (micro-units / 10⁶), ``monetary_mean`` (``total_spend /
n_purchases``, 0 without purchases), ``frequency`` (``max(n_purchase_days - 1,
0)``), as :class:`processors.rfm.state.RfmRecord` computes them, and
``segment_name`` (the name of ``rfm:{segment}`` in the segment catalogue
``{ns}:segments``, which every entry into a segment records).

``features`` split over two fields, ``features`` (the first 63 bytes) and
``features2`` (the rest, possibly empty): ``0x01``, the day (uint16 LE, days
since 1970-01-01), a uint16 LE bit mask over :data:`FEATURE_NAMES` (bit *i*:
name *i* present), then one f64 per present name in that order (at most 5 +
12 × 8 = 101 B, so two fields of at most 63 B).

**Lossless or version 0.** An encoder decodes what it produced and compares it
with the value it was given (all but ``segment_name``); anything the compact
form cannot carry exactly (a feature name outside :data:`FEATURE_NAMES`, a
non-finite number, a summary whose derived fields disagree, a score outside
0-255) is stored as version 0 JSON instead. Readers therefore always get what
was written, in either version.

``hours`` (one field, 49 B, written with the features when the pipeline has
the customer's hourly shapes, :attr:`processors.features.CustomerFeatures.shape`):
``0x01``, then 24 uint8 for the weekday shape (hours 00-23, UTC) and 24 for
the weekend-day shape. Each shape is quantised against its own largest share
(that hour stores 255, hour *h* ``round(255 × share_h / max share)``) and
normalised back to shares summing to 1 on decode, so the stored scale is
implicit: an hour's share is off by at most 0.5/255 of the largest share (at
10 kWh a day with a 20 % peak hour, under 0.004 kWh). No version 0: a shape
the form cannot carry (a share missing, negative or not finite) is not
written, and readers fall back to the four period shares of ``features``.

A hash that once held a version-0 value stays a ``hashtable`` in Redis after
the value is rewritten (Redis never converts back); ``meterseg`` rewrites it
whole only when it is deleted. See docs/scaling.md, "Redis memory".
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from processors.features import LOAD_SHAPE_FEATURES, RFM_FEATURES, WEEKDAY_SHAPE, WEEKEND_SHAPE
from processors.jsonbytes import dumps

V1 = 0x01
V2 = 0x02
#: field names in the customer hash
RFM_FIELD = "rfm"
FEATURES_FIELD = "features"
FEATURES_TAIL_FIELD = "features2"
FEATURES_FIELDS: tuple[str, str] = (FEATURES_FIELD, FEATURES_TAIL_FIELD)
HOURS_FIELD = "hours"
#: stored length of a version-1 ``hours`` value: the version byte and 2 × 24 quantised shares
HOURS_LEN = 49
#: largest value (bytes) a version-1 writer puts in one field: within a stock ``hash-max-listpack-value`` (64)
#: and within listpack's 1-byte string header (up to 63 bytes)
MAX_VALUE = 63
#: the names a version-1 ``features`` value can carry, in stored order (bit i of the mask = name i)
FEATURE_NAMES: tuple[str, ...] = (*LOAD_SHAPE_FEATURES, *RFM_FEATURES)
_FEATURE_INDEX = {n: i for i, n in enumerate(FEATURE_NAMES)}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_US = timedelta(microseconds=1)
_F64 = struct.Struct("<d")
_U16 = struct.Struct("<H")
_RFM_COUNTS = ("T_days", "recency_days", "n_purchases", "n_purchase_days", "n_viewed", "n_processed")
_SCORES = ("r_score", "f_score", "m_score")
_FIRST, _LAST, _DSL, _SCORED, _SEGMENT = 1, 2, 4, 8, 16
MICROS = 1_000_000


class _Unsupported(ValueError):
    """The value has no exact version-1 form (the encoder falls back to version 0)."""


# ------------------------------------------------------------------------------------------- varints
def _uvar(out: bytearray, n: int) -> None:
    if n < 0:
        raise _Unsupported("negative count")
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _svar(out: bytearray, n: int) -> None:
    _uvar(out, (n << 1) if n >= 0 else ((-n << 1) - 1))


def _read_uvar(buf: bytes, pos: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def _read_svar(buf: bytes, pos: int) -> tuple[int, int]:
    z, pos = _read_uvar(buf, pos)
    return (z >> 1) if not z & 1 else -((z + 1) >> 1), pos


def _as_bytes(raw: bytes | str) -> bytes:
    return raw.encode() if isinstance(raw, str) else bytes(raw)


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return (_EPOCH_DAY + timedelta(days=day)).isoformat() + "T"


def _iso(us: int) -> str:
    """UTC time ``us`` µs after the epoch as pydantic writes it in JSON mode (``...Z``).

    Examples:
        >>> _iso(0), _iso(1_766_816_283_000_500), _iso(-1)
        ('1970-01-01T00:00:00Z', '2025-12-27T06:18:03.000500Z', '1969-12-31T23:59:59.999999Z')
    """
    seconds, micro = divmod(us, 1_000_000)
    day, second = divmod(seconds, 86_400)
    hour, second = divmod(second, 3_600)
    minute, second = divmod(second, 60)
    clock = f"{_day_prefix(day)}{hour:02d}:{minute:02d}:{second:02d}"
    return f"{clock}.{micro:06d}Z" if micro else clock + "Z"


def _micros(iso: str) -> int:
    t = datetime.fromisoformat(iso)
    if t.tzinfo is None or t.utcoffset() != timedelta(0):
        raise _Unsupported("timestamps must be UTC")
    return (t - _EPOCH) // _US


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ----------------------------------------------------------------------------------------------- rfm
def _encode_rfm_v1(value: Mapping[str, Any], version: int = V2) -> bytes:
    out = bytearray((version, 0))
    flags = 0
    first, last = value.get("first_purchase"), value.get("last_purchase")
    if first is not None:
        flags |= _FIRST
        first_us = _micros(first)
        _svar(out, first_us)
        if last is not None:
            flags |= _LAST
            _svar(out, _micros(last) - first_us)
    elif last is not None:
        raise _Unsupported("a last purchase without a first")
    dsl = value.get("days_since_last")
    if dsl is not None:
        if not isinstance(dsl, float | int) or isinstance(dsl, bool) or not math.isfinite(dsl):
            raise _Unsupported("days_since_last")
        flags |= _DSL
        out += _F64.pack(float(dsl))
    for name in _RFM_COUNTS:
        v: Any = value.get(name)
        if not _is_int(v):
            raise _Unsupported(name)
        _uvar(out, v)
    spend = value.get("total_spend")
    if not isinstance(spend, float | int) or isinstance(spend, bool) or not math.isfinite(spend):
        raise _Unsupported("total_spend")
    _svar(out, round(spend * MICROS))
    if version == V2:
        first_day = value.get("first_day_spend")
        if not isinstance(first_day, float | int) or isinstance(first_day, bool) or not math.isfinite(first_day):
            raise _Unsupported("first_day_spend")
        _svar(out, round(first_day * MICROS))
    scores: list[Any] = [value.get(s) for s in _SCORES]
    if all(_is_int(s) and 0 <= s <= 255 for s in scores):
        flags |= _SCORED
        out += bytes(scores)
    elif any(s is not None for s in scores):
        raise _Unsupported("scores")
    segment = value.get("segment")
    if segment is not None:
        if not isinstance(segment, str) or not segment:
            raise _Unsupported("segment")
        flags |= _SEGMENT
        out += segment.encode()
    out[1] = flags
    return bytes(out)


def _decode_rfm_v1(buf: bytes, customer_id: str, segment_names: Mapping[str, Any]) -> dict[str, Any]:
    flags, pos = buf[1], 2
    first_us = last_us = None
    if flags & _FIRST:
        first_us, pos = _read_svar(buf, pos)
        if flags & _LAST:
            delta, pos = _read_svar(buf, pos)
            last_us = first_us + delta
    dsl = None
    if flags & _DSL:
        (dsl,) = _F64.unpack_from(buf, pos)
        pos += 8
    counts = []
    for _ in _RFM_COUNTS:
        n, pos = _read_uvar(buf, pos)
        counts.append(n)
    t_days, recency_days, n_purchases, n_purchase_days, n_viewed, n_processed = counts
    micros, pos = _read_svar(buf, pos)
    first_day_spend = monetary_value = None
    v2 = buf[0] == V2
    if v2:
        first_micros, pos = _read_svar(buf, pos)
        first_day_spend = first_micros / MICROS
        frequency = max(n_purchase_days - 1, 0)
        monetary_value = (micros - first_micros) / MICROS / frequency if frequency else 0.0
    scores: list[int | None] = [None, None, None]
    if flags & _SCORED:
        scores = list(buf[pos : pos + 3])
        pos += 3
    segment = buf[pos:].decode() if flags & _SEGMENT else None
    total_spend = micros / MICROS
    out: dict[str, Any] = {
        "customer_id": customer_id,
        "first_purchase": None if first_us is None else _iso(first_us),
        "last_purchase": None if last_us is None else _iso(last_us),
        "n_purchases": n_purchases,
        "n_purchase_days": n_purchase_days,
        "total_spend": total_spend,
        "monetary_mean": total_spend / n_purchases if n_purchases else 0.0,
        "frequency": max(n_purchase_days - 1, 0),
        "recency_days": recency_days,
        "T_days": t_days,
        "days_since_last": dsl,
        "n_viewed": n_viewed,
        "n_processed": n_processed,
        "first_day_spend": first_day_spend,
        "monetary_value": monetary_value,
        "r_score": scores[0],
        "f_score": scores[1],
        "m_score": scores[2],
        "segment": segment,
        "segment_name": None if segment is None else segment_names.get(segment),
    }
    if not v2:
        del out["first_day_spend"], out["monetary_value"]
    return out


def encode_rfm(value: Mapping[str, Any]) -> bytes:
    """The stored ``rfm`` value of a version-0 ``rfm`` object: version 1 when exact, else version-0 JSON.

    ``value`` is the object the API serves; ``customer_id`` and
    ``segment_name`` are not stored (from the key and the catalogue).

    Examples:
        >>> v = {"customer_id": "C1", "first_purchase": "2025-12-27T06:18:03Z",
        ...      "last_purchase": "2025-12-29T10:00:00.250000Z", "n_purchases": 3, "n_purchase_days": 2,
        ...      "total_spend": 350.5, "monetary_mean": 350.5 / 3, "frequency": 1, "recency_days": 2,
        ...      "T_days": 5, "days_since_last": 3.5, "n_viewed": 1, "n_processed": 2,
        ...      "first_day_spend": 100.5, "monetary_value": 250.0, "r_score": 4, "f_score": 2, "m_score": 5, "segment": "need_attention",
        ...      "segment_name": "Need Attention"}
        >>> raw = encode_rfm(v)
        >>> raw[0], len(raw)
        (2, 56)
        >>> decode_rfm(raw, "C1", {"need_attention": "Need Attention"}) == v
        True
        >>> encode_rfm({**v, "monetary_mean": 1.0})[:1]  # derived field disagrees: stored as JSON
        b'{'
    """
    try:
        raw = _encode_rfm_v1(value, V2 if "first_day_spend" in value else V1)
        back = _decode_rfm_v1(raw, str(value.get("customer_id")), {})
        if back == {**value, "segment_name": None}:
            return raw  # (a segment id over ~15 characters makes it longer than MAX_VALUE: exact, still small)
    except (_Unsupported, ValueError, TypeError, OverflowError, IndexError):
        pass
    return dumps(value)


def decode_rfm(raw: bytes | str | None, customer_id: str, segment_names: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``rfm`` object (as the API serves it) from a stored value of either version; ``None`` for none.

    ``segment_names`` maps an rfm segment id to its name (:func:`rfm_segment_names`
    of the catalogue); version 0 carries its own.

    Examples:
        >>> decode_rfm(b'{"customer_id": "C1", "segment": null}', "C1", {})
        {'customer_id': 'C1', 'segment': None}
        >>> decode_rfm(None, "C1", {}) is None
        True
    """
    if raw is None:
        return None
    buf = _as_bytes(raw)
    if not buf:
        return None
    if buf[0] in (V1, V2):
        return _decode_rfm_v1(buf, customer_id, segment_names)
    if buf[:1] == b"{":
        out: dict[str, Any] = orjson.loads(buf)
        return out
    raise ValueError(f"unknown rfm value format (first byte {buf[0]:#04x})")


def rfm_segment_names(catalogue: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """rfm segment id → name, from the segment catalogue (``family:id`` → entry).

    Examples:
        >>> rfm_segment_names({"rfm:lost": {"family": "rfm", "id": "lost", "name": "Lost"},
        ...                    "behaviour:B1": {"family": "behaviour", "id": "B1", "name": "peaky"}})
        {'lost': 'Lost'}
    """
    return {str(e.get("id")): e.get("name") for e in catalogue.values() if e.get("family") == "rfm"}


# ------------------------------------------------------------------------------------------ features
def _encode_features_v1(day: date, values: Mapping[str, float]) -> bytes:
    mask = 0
    for name in values:
        i = _FEATURE_INDEX.get(name)
        if i is None:
            raise _Unsupported(f"feature {name!r}")
        mask |= 1 << i
    days = (day - _EPOCH_DAY).days
    if not 0 <= days <= 0xFFFF:
        raise _Unsupported("day")
    out = bytearray((V1,))
    out += _U16.pack(days)
    out += _U16.pack(mask)
    for name in FEATURE_NAMES:
        if mask & (1 << _FEATURE_INDEX[name]):
            v = values[name]
            if not isinstance(v, float | int) or isinstance(v, bool) or not math.isfinite(v):
                raise _Unsupported(f"feature {name!r} = {v!r}")
            out += _F64.pack(float(v))
    return bytes(out)


def _decode_features_v1(buf: bytes) -> dict[str, Any]:
    (days,) = _U16.unpack_from(buf, 1)
    (mask,) = _U16.unpack_from(buf, 3)
    out: dict[str, Any] = {"day": (_EPOCH_DAY + timedelta(days=days)).isoformat()}
    pos = 5
    for i, name in enumerate(FEATURE_NAMES):
        if mask & (1 << i):
            (out[name],) = _F64.unpack_from(buf, pos)
            pos += 8
    return out


def encode_features(day: date | str, values: Mapping[str, float]) -> dict[str, bytes]:
    """The stored fields of a customer's features: ``features`` and ``features2`` (every write sets both).

    Version 1 when every name is in :data:`FEATURE_NAMES` and every value is a
    finite number (exact: float64), else version-0 JSON in ``features`` and an
    empty ``features2``.

    Examples:
        >>> f = encode_features("2026-01-05", {"mean_daily_kwh": 7.8, "share_evening": 0.769})
        >>> [(k, len(v)) for k, v in f.items()]
        [('features', 21), ('features2', 0)]
        >>> decode_features(f["features"], f["features2"])
        {'day': '2026-01-05', 'mean_daily_kwh': 7.8, 'share_evening': 0.769}
        >>> full = encode_features("2026-01-05", {n: 0.5 for n in FEATURE_NAMES})
        >>> [len(v) for v in full.values()], decode_features(*full.values())["rfm.monetary_mean"]
        ([63, 38], 0.5)
        >>> encode_features("2026-01-05", {"mood": 1.0})["features"]
        b'{"day":"2026-01-05","mood":1.0}'
    """
    the_day = date.fromisoformat(day) if isinstance(day, str) else day
    expected = {"day": the_day.isoformat(), **values}
    try:
        raw = _encode_features_v1(the_day, values)
        back = _decode_features_v1(raw)
        if back == expected:
            return {FEATURES_FIELD: raw[:MAX_VALUE], FEATURES_TAIL_FIELD: raw[MAX_VALUE:]}
    except (_Unsupported, ValueError, TypeError, OverflowError):
        pass
    return {FEATURES_FIELD: dumps(expected), FEATURES_TAIL_FIELD: b""}


def decode_features(raw: bytes | str | None, tail: bytes | str | None = None) -> dict[str, Any] | None:
    """The ``features`` object (``day`` and every value) from the two stored fields, either version.

    Examples:
        >>> decode_features(b'{"day": "2026-01-05", "variability": 0.1}')
        {'day': '2026-01-05', 'variability': 0.1}
        >>> decode_features(None, None) is None
        True
    """
    if raw is None:
        return None
    buf = _as_bytes(raw)
    if not buf:
        return None
    if buf[0] == V1:
        return _decode_features_v1(buf + (_as_bytes(tail) if tail else b""))
    if buf[:1] == b"{":
        out: dict[str, Any] = orjson.loads(buf)
        return out
    raise ValueError(f"unknown features value format (first byte {buf[0]:#04x})")


# --------------------------------------------------------------------------------------------- hours
def _quantised(shares: list[float]) -> bytes:
    peak = max(shares)
    if peak <= 0:
        return bytes([255] * 24)  # nothing consumed: a flat day (what processors.features assumes then)
    return bytes(min(255, round(255 * v / peak)) for v in shares)


def encode_hours(shape: Mapping[str, float]) -> bytes | None:
    """The stored ``hours`` value of a customer's hourly shapes (``weekday_hNN`` and ``weekend_hNN`` shares).

    ``None`` when ``shape`` lacks an hour or holds a negative or non-finite share (then nothing is written).

    Examples:
        >>> evening = [0.02] * 18 + [0.64 / 6] * 6
        >>> shape = {**dict(zip(WEEKDAY_SHAPE, evening)), **{n: 1 / 24 for n in WEEKEND_SHAPE}}
        >>> raw = encode_hours(shape)
        >>> len(raw), raw[0], raw[1], raw[19], raw[25]
        (49, 1, 48, 255, 255)
        >>> wd, we = decode_hours(raw)
        >>> round(wd[0], 4), round(wd[23], 4), round(sum(wd), 9), round(we[5], 6)  # (0.02, 0.1067 given)
        (0.0201, 0.1065, 1.0, 0.041667)
        >>> encode_hours({"weekday_h00": 1.0}) is None
        True
    """
    try:
        wd = [float(shape[n]) for n in WEEKDAY_SHAPE]
        we = [float(shape[n]) for n in WEEKEND_SHAPE]
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) and v >= 0 for v in (*wd, *we)):
        return None
    return bytes((V1,)) + _quantised(wd) + _quantised(we)


def decode_hours(raw: bytes | str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(weekday shares, weekend-day shares), 24 each summing to 1, from a stored ``hours`` value; ``None`` for none.

    Examples:
        >>> decode_hours(None) is None, decode_hours(b"") is None
        (True, True)
    """
    if raw is None:
        return None
    buf = _as_bytes(raw)
    if not buf:
        return None
    if buf[0] != V1 or len(buf) != HOURS_LEN:
        raise ValueError(f"unknown hours value format (first byte {buf[0]:#04x}, {len(buf)} bytes)")
    wd, we = buf[1:25], buf[25:49]
    return tuple(v / sum(wd) for v in wd), tuple(v / sum(we) for v in we)


def decode_hours_many(raws: Sequence[bytes | str | None]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Every customer's hourly shares at once: an ``(n, 48)`` array (weekday hours, then weekend-day hours,
    each row half summing to 1) and whether row *i* had a stored shape (rows without one are 0).

    Examples:
        >>> raw = encode_hours({**{n: 1 / 24 for n in WEEKDAY_SHAPE}, **{n: 1 / 24 for n in WEEKEND_SHAPE}})
        >>> shares, ok = decode_hours_many([raw, None, b"x"])
        >>> shares.shape, ok.tolist(), round(float(shares[0, :24].sum()), 5), float(shares[1].sum())
        ((3, 48), [True, False, False], 1.0, 0.0)
    """
    ok = np.array([r is not None and len(r) == HOURS_LEN and _as_bytes(r)[0] == V1 for r in raws], dtype=np.bool_)
    out = np.zeros((len(raws), 48), dtype=np.float32)
    if ok.any():
        stored = b"".join(_as_bytes(r) for r, good in zip(raws, ok.tolist(), strict=True) if good and r is not None)
        q = np.frombuffer(stored, dtype=np.uint8).reshape(-1, HOURS_LEN)[:, 1:].astype(np.float32).reshape(-1, 2, 24)
        out[ok] = (q / q.sum(axis=2, keepdims=True)).reshape(-1, 48)
    return out, ok
