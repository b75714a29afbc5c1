"""The simulated fleet: meters and customers held as numpy arrays.

A million meters must fit in well under 2 GB, so there is no per-meter Python
object: every attribute is one array indexed by meter (or customer) number.
Ids are fixed-width (``M0000042``, ``C0000042``) so they can be hashed to
Kafka partitions in bulk (:mod:`simulators.partition`) and formatted fast.

Customers and meters: most customers own one meter; a share
(``multi_meter_share``) owns two. The hidden archetype belongs to the
*customer* (both meters follow it, each with its own volume scale), because
segments are about customers.

Engagement classes drive purchases so that RFM segments come out meaningful:
``loyal`` (frequent buyers), ``regular``, ``occasional``, ``lapsing`` (active,
then stop at ``lapse_day``) and ``new`` (installed recently, start buying at
``first_day``).

Examples:
    >>> f = build_fleet(FleetConfig(meters=1000, seed=1))
    >>> f.n_meters, f.n_customers < 1000, bytes(f.meter_ids[0]), bytes(f.customer_ids[0])
    (1000, True, b'M0000000', b'C0000000')
    >>> int(f.meter_partition.max()) < 4 and bool(np.all(np.diff(f.by_partition[0]) > 0))
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from simulators.archetypes import CATALOGUE, default_weights
from simulators.partition import partitions_fixed

log = logging.getLogger(__name__)

DEFAULT_REGIONS: tuple[str, ...] = ("North", "South", "East", "West")
ENGAGEMENT: tuple[str, ...] = ("loyal", "regular", "occasional", "lapsing", "new")
ENGAGEMENT_SHARES: tuple[float, ...] = (0.15, 0.35, 0.25, 0.15, 0.10)
FIRMWARES: tuple[bytes, ...] = (b"1.4.2", b"1.5.0", b"2.0.1", b"2.1.0")


@dataclass(frozen=True)
class FleetConfig:
    """What the fleet looks like; everything drawn from ``seed``."""

    meters: int = 10_000
    seed: int = 0
    regions: tuple[str, ...] = DEFAULT_REGIONS
    prepaid_share: float = 0.35
    multi_meter_share: float = 0.02
    days: int = 1  # horizon, used to place lapses and first purchases of new customers
    archetype_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.meters < 1:
            raise ValueError("meters must be >= 1")
        if self.meters > 99_999_999:
            raise ValueError("meters must be < 100 000 000 (ids are 8 digits)")
        if not self.regions or any(not r or not r.replace("-", "").replace("_", "").isalnum()
                                   for r in self.regions):
            raise ValueError("regions must be non-empty alphanumeric names (e.g. North,South)")
        if not 0.0 <= self.prepaid_share <= 1.0:
            raise ValueError("prepaid_share must be within [0, 1]")
        if not 0.0 <= self.multi_meter_share < 1.0:
            raise ValueError("multi_meter_share must be within [0, 1)")
        if self.archetype_weights is not None and len(self.archetype_weights) != len(CATALOGUE):
            raise ValueError(f"archetype_weights needs {len(CATALOGUE)} values")


@dataclass
class Fleet:
    """Arrays describing every meter and customer. Mutable parts: ``archetype``, ``register``."""

    config: FleetConfig
    meter_ids: np.ndarray  # S, per meter
    customer_ids: np.ndarray  # S, per customer
    meter_customer: np.ndarray  # int32, per meter
    region: np.ndarray  # int16, per customer
    prepaid: np.ndarray  # bool, per customer
    installed_day: np.ndarray  # int32 days relative to the start (negative = before), per meter
    archetype: np.ndarray  # int8, per customer (current)
    scale: np.ndarray  # float32, per meter
    jitter: np.ndarray  # int8 intervals of time shift of the daily profile, per meter
    voltage_offset: np.ndarray  # float32, per meter
    pv_scale: np.ndarray  # float32, per meter
    signal: np.ndarray  # float32 dBm, per meter
    battery: np.ndarray  # float32 %, per meter
    firmware: np.ndarray  # int8 index into FIRMWARES, per meter
    engagement: np.ndarray  # int8 index into ENGAGEMENT, per customer
    lapse_day: np.ndarray  # float32 (lapsing customers stop buying after it), per customer
    first_day: np.ndarray  # float32 (new customers start buying at it), per customer
    register: np.ndarray  # float64 cumulative import kWh, per meter
    meter_partition: np.ndarray  # int32
    customer_partition: np.ndarray  # int32
    by_partition: list[np.ndarray] = field(default_factory=list)
    partitions: int = 4

    @property
    def n_meters(self) -> int:
        return int(self.meter_ids.shape[0])

    @property
    def n_customers(self) -> int:
        return int(self.customer_ids.shape[0])

    def meter_archetype(self) -> np.ndarray:
        """Current archetype of every meter (its customer's)."""
        return self.archetype[self.meter_customer]

    def has_export(self) -> np.ndarray:
        """Meters whose customer is (now) a solar prosumer: negative net consumption is legitimate."""
        solar = np.array([a.solar_kwh > 0 for a in CATALOGUE])
        return solar[self.meter_archetype()]

    def nbytes(self) -> int:
        """Memory held by the arrays (for the operator log at large fleets)."""
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


def _ids(prefix: bytes, n: int) -> np.ndarray:
    width = max(7, len(str(max(n - 1, 0))))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(f"S{width}"), width))


def build_fleet(config: FleetConfig, partitions: int = 4) -> Fleet:
    """Draw a fleet from ``config.seed`` (independent of every other random stream of the run)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    n = config.meters
    extra = round(n * config.multi_meter_share / (1.0 + config.multi_meter_share))
    n_cust = n - extra
    meter_customer = np.empty(n, dtype=np.int32)
    meter_customer[:n_cust] = np.arange(n_cust, dtype=np.int32)
    if extra:
        meter_customer[n_cust:] = np.sort(rng.choice(n_cust, size=extra, replace=False)).astype(np.int32)
    weights = np.asarray(config.archetype_weights, dtype=np.float64) if config.archetype_weights \
        else default_weights()
    weights = weights / weights.sum()
    archetype = rng.choice(len(CATALOGUE), size=n_cust, p=weights).astype(np.int8)
    engagement = rng.choice(len(ENGAGEMENT), size=n_cust, p=ENGAGEMENT_SHARES).astype(np.int8)
    horizon = max(config.days, 1)
    lapse_day = rng.uniform(-60.0, horizon, size=n_cust).astype(np.float32)
    first_day = rng.uniform(-20.0, horizon, size=n_cust).astype(np.float32)
    installed = rng.integers(-3650, -60, size=n, dtype=np.int32)
    is_new = engagement[meter_customer] == ENGAGEMENT.index("new")
    installed[is_new] = np.floor(first_day[meter_customer[is_new]]).astype(np.int32) - rng.integers(
        1, 30, size=int(is_new.sum()), dtype=np.int32)
    meter_ids = _ids(b"M", n)
    customer_ids = _ids(b"C", n_cust)
    meter_partition = partitions_fixed(meter_ids, partitions)
    customer_partition = partitions_fixed(customer_ids, partitions)
    by_partition = [np.flatnonzero(meter_partition == p) for p in range(partitions)]
    fleet = Fleet(
        config=config,
        meter_ids=meter_ids,
        customer_ids=customer_ids,
        meter_customer=meter_customer,
        region=rng.integers(0, len(config.regions), size=n_cust, dtype=np.int16),
        prepaid=rng.random(n_cust) < config.prepaid_share,
        installed_day=installed,
        archetype=archetype,
        scale=rng.lognormal(0.0, 0.35, size=n).astype(np.float32),
        jitter=rng.integers(-2, 3, size=n, dtype=np.int8),
        voltage_offset=rng.normal(0.0, 2.0, size=n).astype(np.float32),
        pv_scale=rng.uniform(0.6, 1.4, size=n).astype(np.float32),
        signal=rng.uniform(-95.0, -55.0, size=n).astype(np.float32),
        battery=rng.uniform(60.0, 100.0, size=n).astype(np.float32),
        firmware=rng.integers(0, len(FIRMWARES), size=n, dtype=np.int8),
        engagement=engagement,
        lapse_day=lapse_day,
        first_day=first_day,
        register=rng.uniform(100.0, 40_000.0, size=n).round(4),
        meter_partition=meter_partition,
        customer_partition=customer_partition,
        by_partition=by_partition,
        partitions=partitions,
    )
    log.info("fleet: %d meters, %d customers, %d partitions, %.1f MB of arrays",
             n, n_cust, partitions, fleet.nbytes() / 1e6)
    return fleet
