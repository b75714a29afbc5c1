"""Shared builders for the ingest tests: a small fleet and its readings as JSON or columns.

Kept in a ``test_ingest_*`` module so the other processor tests can import it
without a package ``__init__``; it defines no tests itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from processors.columns import EPOCH, MeterRegistry
from stream.schemas import MeterInfo

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
REGIONS = ("North", "South", "East", "West")


def make_registry(n_meters: int, *, export_every: int = 5) -> MeterRegistry:
    """``n_meters`` meters M0000000.., one customer each, regions round-robin, every k-th with export."""
    return MeterRegistry(
        MeterInfo(
            meter_id=f"M{i:07d}",
            customer_id=f"C{i:07d}",
            region=REGIONS[i % len(REGIONS)],
            tariff="prepaid" if i % 2 else "postpaid",
            installed_on=EPOCH,
            has_export=(i % export_every == 0),
        )
        for i in range(n_meters)
    )


def iso(epoch: int) -> str:
    """``2026-01-01T00:00:00Z`` form of an epoch second."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_rows(
    n_meters: int, n_intervals: int, *, seed: int = 0, t0: int = T0, interval_s: int = 900
) -> list[dict[str, Any]]:
    """Plausible readings, interval-major (all meters for interval 0, then interval 1 ...).

    A daily load shape per meter times mild lognormal noise: smooth enough that
    the health rules stay quiet on it (i.i.d. heavy-tailed noise is not what
    meters report).
    """
    rng = np.random.default_rng(seed)
    k = np.arange(n_intervals)[:, None]
    phase = rng.uniform(0, 2 * np.pi, size=n_meters)
    scale = rng.uniform(0.1, 0.5, size=n_meters)
    shape = 1.0 + 0.6 * np.sin(2 * np.pi * k * interval_s / 86400 + phase)
    kwh = (scale * shape * rng.lognormal(0.0, 0.15, size=(n_intervals, n_meters))).round(4)
    register = 1000.0 + np.cumsum(kwh, axis=0)
    volt = rng.normal(231.0, 2.0, size=(n_intervals, n_meters)).round(1)
    rows = []
    for k in range(n_intervals):
        for m in range(n_meters):
            rows.append(
                {
                    "meter_id": f"M{m:07d}",
                    "customer_id": f"C{m:07d}",
                    "interval_start": t0 + k * interval_s,
                    "interval_minutes": interval_s // 60,
                    "kwh_import": float(kwh[k, m]),
                    "kwh_export": 0.0,
                    "register_kwh": float(register[k, m]),
                    "voltage": float(volt[k, m]),
                    "power_factor": 0.97,
                    "seq": k,
                }
            )
    return rows


def to_json_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row with ``interval_start`` as an ISO string, as the wire carries it."""
    return {**row, "interval_start": iso(row["interval_start"])}


def single_payloads(rows: list[dict[str, Any]]) -> list[bytes]:
    """One JSON message per reading."""
    return [orjson.dumps(to_json_row(r)) for r in rows]


def envelope_payloads(rows: list[dict[str, Any]], size: int, *, prefix: str = "b") -> list[bytes]:
    """Batch envelopes of ``size`` readings each."""
    out = []
    for k in range(0, len(rows), size):
        out.append(
            orjson.dumps(
                {
                    "batch_id": f"{prefix}{k}",
                    "head_end_id": "hes-1",
                    "sent_at": iso(T0),
                    "readings": [to_json_row(r) for r in rows[k : k + size]],
                }
            )
        )
    return out
