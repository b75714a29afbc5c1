"""Prometheus metrics of a worker, named by Prometheus conventions (base units, ``_total``).

Labels stay low-cardinality: topic, reason, kind, state, region, partition —
never a meter or customer id (a million series would sink Prometheus).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)

EVENTS_CONSUMED = Counter(
    "meterseg_events_consumed_total", "Kafka messages consumed, per source topic", ["topic"], registry=REGISTRY
)
READINGS_PROCESSED = Counter(
    "meterseg_readings_processed_total", "Readings accepted into windows and health rules", registry=REGISTRY
)
HEARTBEATS_PROCESSED = Counter(
    "meterseg_heartbeats_processed_total", "Heartbeats accepted into health rules", registry=REGISTRY
)
DEADLETTERED = Counter(
    "meterseg_deadletter_total", "Messages sent to the dead-letter topic, per reason", ["reason"], registry=REGISTRY
)
DUPLICATES = Counter(
    "meterseg_duplicates_total", "Duplicate readings or events dropped, per source topic", ["topic"], registry=REGISTRY
)
LATENCY = Histogram(
    "meterseg_processing_latency_seconds",
    "Delay from event time (interval end / event timestamp) or broker append time to processing",
    ["source"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "meterseg_consumer_lag_messages", "Messages behind the high watermark", ["topic", "partition"], registry=REGISTRY
)
LAST_PROGRESS = Gauge(
    "meterseg_consumer_last_progress_timestamp_seconds",
    "Unix time the consumer last processed a batch (liveness)",
    ["consumer"],
    registry=REGISTRY,
)
LAST_POLL = Gauge(
    "meterseg_consumer_last_poll_timestamp_seconds",
    "Unix time the consumer last returned from a poll (liveness)",
    ["consumer"],
    registry=REGISTRY,
)
REBALANCES = Counter("meterseg_rebalances_total", "Partition assignments received", registry=REGISTRY)
PARTITIONS_KEPT = Counter(
    "meterseg_partitions_kept_total",
    "Partitions a rebalance left on their worker whose state stayed in memory (not restored), per pipeline",
    ["pipeline"],
    registry=REGISTRY,
)
WINDOWS_EMITTED = Counter(
    "meterseg_windows_emitted_total", "Closed consumption windows emitted, per kind", ["kind"], registry=REGISTRY
)
GAP_WINDOWS = Counter(
    "meterseg_gap_windows_total",
    "Meter windows emitted with no reading (a gap: readings 0, completeness 0), per kind; also in windows_emitted",
    ["kind"],
    registry=REGISTRY,
)
WINDOWS_REVISED = Counter(
    "meterseg_windows_revised_total",
    "Windows emitted again with corrected totals (late readings within the allowed lateness), per kind; "
    "also in windows_emitted",
    ["kind"],
    registry=REGISTRY,
)
LATE_READINGS_COUNTED = Counter(
    "meterseg_late_readings_counted_total",
    "Readings whose window had already closed that still counted (within the allowed lateness of their meter)",
    registry=REGISTRY,
)
METERS_BY_HEALTH = Gauge(
    "meterseg_meters", "Meters owned by this worker, per health state", ["state"], registry=REGISTRY
)
METERS_LATE = Gauge("meterseg_meters_late", "Meters currently silent beyond the allowed gap", registry=REGISTRY)
REGION_FRONTIER_SPREAD = Gauge(
    "meterseg_region_frontier_spread_seconds",
    "Event seconds between the most and the least advanced partition frontier of the regional windows "
    "(a regional window is emitted once every partition has passed it)",
    registry=REGISTRY,
)
REGION_FRONTIER_MISSING = Gauge(
    "meterseg_region_frontier_missing_partitions",
    "Partitions that have not reported a regional frontier (no regional window can be emitted meanwhile)",
    registry=REGISTRY,
)
REGION_KWH = Counter(
    "meterseg_region_energy_kwh_total",
    "kWh in closed regional windows, per region and direction (import/export)",
    ["region", "direction"],
    registry=REGISTRY,
)
REGION_REVENUE = Counter(
    "meterseg_region_revenue_total", "Revenue (currency units) per region", ["region"], registry=REGISTRY
)
ALERTS = Counter(
    "meterseg_alerts_total", "Meter alerts per kind and action (raised/cleared)", ["kind", "action"], registry=REGISTRY
)
REDIS_LATENCY = Histogram(
    "meterseg_redis_operation_seconds",
    "Duration of Redis round trips (pipelines and scripts), per operation",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "meterseg_batch_processing_seconds",
    "Time to process one polled batch, per pipeline",
    ["pipeline"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
CHECKPOINTS = Counter(
    "meterseg_checkpoints_total", "State checkpoints written to Redis, per pipeline", ["pipeline"], registry=REGISTRY
)
CHECKPOINT_BYTES = Counter(
    "meterseg_checkpoint_bytes_total",
    "Checkpoint bytes, per pipeline and kind: written (the chunks not stored yet, and the skeleton) and "
    "state (the size of every checkpointed state); written/state is the share a checkpoint rewrites",
    ["pipeline", "kind"],
    registry=REGISTRY,
)
RECOVERY_SECONDS = Histogram(
    "meterseg_recovery_seconds",
    "Time to restore partition state on assignment",
    ["pipeline"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)


def observe_many(histogram: Any, values: Sequence[float] | np.ndarray) -> None:
    """Observe many values at once: what ``for v in values: histogram.observe(v)`` does, in one numpy pass.

    Why: the ingest pipeline observes hundreds of latency samples per poll,
    and ``Histogram.observe`` costs about 3 µs each in Python (a tenth of a
    worker's CPU in the envelope benchmark). ``histogram`` is a labelled child
    (``LATENCY.labels("event_time")``). It adds to the child's bucket counters
    and sum as ``observe`` does (a value goes to the first bucket whose upper
    bound is at least the value); NaN values are skipped (``observe`` would
    make the sum NaN for good).

    Examples:
        >>> h = Histogram("example_seconds", "doc", buckets=(0.1, 1.0), registry=CollectorRegistry())
        >>> observe_many(h, [0.05, 0.1, 0.5, 7.0, float("nan")])
        >>> [(s.name, s.labels.get("le"), s.value) for s in h.collect()[0].samples][:4]
        [('example_seconds_bucket', '0.1', 2.0), ('example_seconds_bucket', '1.0', 3.0), \
('example_seconds_bucket', '+Inf', 4.0), ('example_seconds_count', None, 4.0)]
    """
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if not len(arr):
        return
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    counts = np.bincount(np.searchsorted(bounds, arr, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(arr.sum()))
    for i in np.flatnonzero(counts[: len(bounds)]).tolist():
        histogram._buckets[i].inc(int(counts[i]))


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose :data:`REGISTRY` on ``http://addr:port/metrics``."""
    start_http_server(port, addr=addr, registry=REGISTRY)


# -- segmentation ---------------------------------------------------------------------------------
SEGMENT_MEMBERS = Gauge(
    "meterseg_segment_members", "Customers in a segment", ["family", "segment"], registry=REGISTRY
)
SEGMENT_ENTRIES = Counter(
    "meterseg_segment_entries_total", "Customers entering a segment", ["family", "segment"], registry=REGISTRY
)
SEGMENT_EXITS = Counter(
    "meterseg_segment_exits_total", "Customers leaving a segment", ["family", "segment"], registry=REGISTRY
)
SEGMENT_VOLATILITY = Gauge(
    "meterseg_segment_volatility_ratio",
    "(entries + exits) / size over the last simulated or real day, per segment",
    ["family", "segment"],
    registry=REGISTRY,
)
PROFILE_UPDATES = Counter(
    "meterseg_profile_updates_total", "Customer profile updates (RFM or features)", ["kind"], registry=REGISTRY
)
PURCHASES_APPLIED = Counter(
    "meterseg_purchases_applied_total", "Purchase events applied to RFM state, per event type", ["event_type"],
    registry=REGISTRY,
)
DRIFT_EVENTS = Counter(
    "meterseg_drift_events_total", "Drift detections of the behaviour model, per signal", ["signal"], registry=REGISTRY
)
MODEL_VERSION = Gauge("meterseg_model_version", "Version of the fleet-wide behaviour model", registry=REGISTRY)
CUSTOMERS = Gauge("meterseg_customers", "Customers with state, per kind (new/returning)", ["kind"], registry=REGISTRY)
REVENUE = Counter(
    "meterseg_purchase_revenue_total", "Purchased amount (currency units), per channel", ["channel"], registry=REGISTRY
)

# -- operations -----------------------------------------------------------------------------------
EVENTS_APPLIED = Counter(
    "meterseg_events_applied_total",
    "Valid events of the operations topics applied, per source topic (the others are dead-lettered)",
    ["topic"],
    registry=REGISTRY,
)
MAINTENANCE_OPENED = Counter(
    "meterseg_maintenance_requests_opened_total", "Maintenance requests opened", ["region"], registry=REGISTRY
)
MAINTENANCE_RESOLVED = Counter(
    "meterseg_maintenance_requests_resolved_total", "Maintenance requests resolved", ["region"], registry=REGISTRY
)
MAINTENANCE_RESOLUTION = Histogram(
    "meterseg_maintenance_resolution_seconds",
    "Time from request to resolution",
    buckets=(3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400, 14 * 86400, 30 * 86400),
    registry=REGISTRY,
)
MAINTENANCE_BY_TECHNICIAN = Counter(
    "meterseg_maintenance_requests_by_technician_total",
    "Resolved requests per technician (bounded: technicians are few)",
    ["technician"],
    registry=REGISTRY,
)
FEEDBACK = Counter(
    "meterseg_feedback_total", "Satisfaction scores received, per score (1-5)", ["score"], registry=REGISTRY
)
BILLS = Counter(
    "meterseg_bills_total", "Bill events, per status (issued, paid)", ["status"], registry=REGISTRY
)
BILLED_AMOUNT = Counter(
    "meterseg_bills_amount_total", "Amount of bill events, per status (issued, paid)", ["status"], registry=REGISTRY
)

METERS_REGISTERED = Gauge(
    "meterseg_meters_registered", "Meters known from the registry topic, per region", ["region"], registry=REGISTRY
)
BILLS_OUTSTANDING = Gauge("meterseg_bills_outstanding", "Bills issued and not yet paid (fleet-wide)", registry=REGISTRY)
BILLS_OUTSTANDING_AMOUNT = Gauge(
    "meterseg_bills_outstanding_amount", "Amount of bills issued and not yet paid (fleet-wide)", registry=REGISTRY
)

INGEST_STATE_MESSAGES = Gauge(
    "meterseg_ingest_state_messages",
    "Units taken into the owned partitions' checkpointed state, per kind (messages, accepted, deadletter, "
    "duplicates): survives restarts, so conservation can be checked on it",
    ["kind"],
    registry=REGISTRY,
)


def init_known_labels(regions: list[str], drift_signals: list[str]) -> None:
    """Create the series of label values known in advance, at zero.

    Prometheus' advice for counters with a known label set: a series that
    exists from the start lets ``increase()`` count its first event and lets a
    panel show 0 instead of "No data" (no feedback yet is an answer, too).
    """
    for score in range(1, 6):
        FEEDBACK.labels(str(score))
    for status in ("issued", "paid"):
        BILLS.labels(status)
        BILLED_AMOUNT.labels(status)
    for region in regions:
        MAINTENANCE_OPENED.labels(region)
        MAINTENANCE_RESOLVED.labels(region)
    for signal in drift_signals:
        DRIFT_EVENTS.labels(signal)
    for event_type in ("VIEWED", "PROCESSED", "PURCHASED"):
        PURCHASES_APPLIED.labels(event_type)
    for channel in ("web", "app", "store", "agent"):
        REVENUE.labels(channel)
    for kind in ("new", "returning"):
        CUSTOMERS.labels(kind)
    for reason in ("invalid_json", "schema", "unsupported_version", "unknown_meter", "too_late", "in_future"):
        DEADLETTERED.labels(reason)

HEAP_RELEASED = Counter(
    "meterseg_heap_released_bytes_total",
    "Resident memory the worker handed back to the system after its peaks (free heap pages, malloc_trim)",
    registry=REGISTRY,
)
TIMER_ERRORS = Counter(
    "meterseg_timer_errors_total",
    "Timer steps that failed (e.g. Redis or Kafka unavailable) and will be retried, per step",
    ["step"],
    registry=REGISTRY,
)
