"""Names of the per-customer and per-meter Redis keys, spread by shard.

The customer projection and the segment member sets (:class:`CustomerKeys`), and the per-meter state:
health, recent windows and alerts, daily kWh rankings (:class:`MeterKeys`). One helper names them
all (writers, the API, tools, tests), so the layout lives in one place.

A Redis Cluster runs a multi-key command or script only when its keys share a hash slot, and a
hash tag (the part of a key in braces) decides the slot. Under the app's one tag (``{app}``) the
whole projection would sit in one slot, on one master. So the customer keys and the member sets
are spread over :attr:`CustomerKeys.shards` *shards*, each its own hash tag ``{app:s<k>}``:

* ``{app:s<k>}:cust:{id}`` — the customer hash (``seg:*``, ``rule:*``, ``rfm``, ``features`` ...);
* ``{app:s<k>}:cust:{id}:hist`` — the customer's last changes;
* ``{app:s<k>}:seg:{family}:{segment}`` — the members of a segment *in shard k*: a segment's
  members are the union over the shards, its size the sum of their sizes.

``k = crc32(customer id) mod shards``: any process computes a customer's shard from its id alone
(the API reads one customer by id), and a customer's hash, history and the member sets it moves
between share one slot, so the membership script stays atomic per customer. The shard count is
not the Kafka partition count: partitions are few (a throughput choice), shards are many (default
:data:`CLUSTER_SHARDS` on a cluster) so the slots spread evenly over the masters. Like the
partition count it is fixed for the life of the data: ``meterseg reshard-customers`` moves a
deployment's keys to another count (see :mod:`stream.state.reshard`).

With one shard (the default on a single Redis server) the keys are those of earlier versions,
under the app namespace: ``app:cust:{id}``, ``app:seg:{family}:{segment}``.

Examples:
    >>> k = CustomerKeys("fleet", 1)
    >>> k.customer("C1"), k.history("C1"), k.members("rfm", "champions")
    ('fleet:cust:C1', 'fleet:cust:C1:hist', ['fleet:seg:rfm:champions'])
    >>> k = CustomerKeys("{fleet}", 4)
    >>> k.shard_of("C1"), k.customer("C1")
    (3, '{fleet:s3}:cust:C1')
    >>> k.members("rfm", "champions")[:2]
    ['{fleet:s0}:seg:rfm:champions', '{fleet:s1}:seg:rfm:champions']
    >>> k.customer_patterns()
    ['{fleet:s*}:cust:*']
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meterseg.settings import Settings

#: shards of the customer keys on a Redis Cluster unless ``METERSEG_REDIS_SHARDS`` says otherwise: 64 hash tags
#: put about 21 slots on each of 3 masters (a spread of about ±18 % at one standard deviation, less with more masters)
CLUSTER_SHARDS = 64


def shard_of(customer_id: str, shards: int) -> int:
    """The shard of a customer: ``crc32(id) mod shards`` (0 with one shard).

    >>> shard_of("C1", 1), shard_of("C1", 64)
    (0, 3)
    """
    return zlib.crc32(customer_id.encode()) % shards if shards > 1 else 0


@dataclass(frozen=True)
class CustomerKeys:
    """Key names of the customer projection of an app (``namespace`` = ``settings.redis_namespace``)."""

    namespace: str
    shards: int = 1

    @property
    def app(self) -> str:
        """The app id (the namespace without its hash-tag braces)."""
        return self.namespace.strip("{}")

    def prefix(self, shard: int) -> str:
        """Key prefix of a shard: the namespace with one shard, else the hash tag ``{app:s<k>}``."""
        return self.namespace if self.shards == 1 else f"{{{self.app}:s{shard}}}"

    def shard_of(self, customer_id: str) -> int:
        return shard_of(customer_id, self.shards)

    def customer_prefix(self, customer_id: str) -> str:
        return self.prefix(self.shard_of(customer_id))

    def customer(self, customer_id: str) -> str:
        """The customer's hash."""
        return f"{self.customer_prefix(customer_id)}:cust:{customer_id}"

    def history(self, customer_id: str) -> str:
        """The customer's list of last changes."""
        return f"{self.customer(customer_id)}:hist"

    def shard_members(self, shard: int, family: str, segment_id: str) -> str:
        """The members of a segment in one shard."""
        return f"{self.prefix(shard)}:seg:{family}:{segment_id}"

    def members(self, family: str, segment_id: str) -> list[str]:
        """The member sets of a segment, one per shard (their union is the segment)."""
        return [self.shard_members(s, family, segment_id) for s in range(self.shards)]

    def route(self, shard: int) -> str:
        """A key (never written) in a shard's slot: routes a script that touches that shard's keys on a cluster."""
        return f"{self.prefix(shard)}:route"

    def customer_patterns(self) -> list[str]:
        """``SCAN MATCH`` patterns of every customer hash and history (one pattern, whatever the shards)."""
        return [f"{self.namespace}:cust:*" if self.shards == 1 else f"{{{self.app}:s*}}:cust:*"]

    def customer_id_of(self, key: str) -> str | None:
        """The customer id of a customer hash's key (None for a history or another key)."""
        _, sep, rest = key.partition(":cust:")
        if not sep or rest.endswith(":hist"):
            return None
        return rest

    def by_shard(self, customer_ids: Iterable[str]) -> dict[int, list[int]]:
        """shard → positions in ``customer_ids`` (to run one script per shard and put answers back in order)."""
        out: dict[int, list[int]] = defaultdict(list)
        for i, cid in enumerate(customer_ids):
            out[self.shard_of(cid)].append(i)
        return dict(out)


def customer_keys(settings: Settings) -> CustomerKeys:
    """The customer key names of the app the settings describe."""
    return CustomerKeys(settings.redis_namespace, settings.state_shards)


#: Redis Cluster hash slots (a key's slot is CRC16 of its hash tag mod 16384)
SLOTS = 16384
#: up to this many meter shards the tags are chosen in evenly spaced slots (0.6 s to find 1024 of them)
PLANNED_SHARDS = 1024


def _meter_tag(app: str, shard: int, shards: int) -> str:
    """The hash tag of meter shard ``shard``: ``app:m<k>`` plus the first salt that puts it in the shard's slot range.

    ``redis-cli --cluster create`` gives each master one contiguous, equal range of slots; tags whose
    slots are evenly spaced over the 16384 (shard k in ``[k, k + 1) * 16384 / shards``) therefore put
    ``shards / masters`` shards on each master (±1), where tags of unplanned slots fall where CRC16 puts
    them (64 random slots over 3 masters: about ±18 % at one standard deviation). Deterministic: any
    process derives the same tags from the app id and the shard count. Beyond :data:`PLANNED_SHARDS`
    shards (the search costs about ``shards`` CRC16s per shard) the tag is the plain ``app:m<k>``.
    """
    from redis.crc import key_slot

    if shards > PLANNED_SHARDS:
        return f"{app}:m{shard}"
    low, high = shard * SLOTS // shards, (shard + 1) * SLOTS // shards
    for salt in range(1_000_000):
        tag = f"{app}:m{shard}.{salt}"
        if low <= key_slot(tag.encode()) < high:
            return tag
    return f"{app}:m{shard}"  # not reached: every range of 16 slots holds the CRC16 of some salt


@lru_cache(maxsize=64)
def _meter_prefixes(namespace: str, shards: int) -> tuple[str, ...]:
    """The key prefixes of the meter shards (computed once per app and shard count)."""
    if shards == 1:
        return (namespace,)
    app = namespace.strip("{}")
    return tuple(f"{{{_meter_tag(app, k, shards)}}}" for k in range(shards))


@dataclass(frozen=True)
class MeterKeys:
    """Key names of the per-meter state of an app, spread over meter shards like the customer keys.

    * ``{p}:health:{meter}`` — the meter's health hash; ``{p}:health:state:{state}`` — the meters of
      shard ``p`` in that state (a state's meters are the union over the shards, its count the sum);
    * ``{p}:meter:{id}:windows``, ``{p}:meter:{id}:alerts`` — recent daily windows and alerts;
    * ``{p}:kwh:{day}``, ``{p}:kwh:{region}:{day}`` — the day's kWh ranking of shard ``p``'s meters
      (top consumers: one ``ZUNIONSTORE`` per shard, the shards' top N merged by the reader).

    ``p`` is the namespace with one shard (the key names of earlier versions), else the hash tag
    ``{app:m<k>.<salt>}`` of the meter's shard ``k = crc32(meter id) mod shards`` (see
    :func:`_meter_tag` for the salt). Same shard count as the customer keys (``METERSEG_REDIS_SHARDS``);
    ``meterseg reshard-customers`` moves both.

    Examples:
        >>> k = MeterKeys("fleet", 1)
        >>> k.health("M1"), k.state_sets("poor"), k.windows("M1"), k.days("2026-01-05", "North")
        ('fleet:health:M1', ['fleet:health:state:poor'], 'fleet:meter:M1:windows', ['fleet:kwh:North:2026-01-05'])
        >>> k = MeterKeys("{fleet}", 4)
        >>> k.shard_of("M1"), k.health("M1")
        (1, '{fleet:m1.2}:health:M1')
        >>> k.patterns()
        ['{fleet:m*}:health:*', '{fleet:m*}:meter:*', '{fleet:m*}:kwh:*']
    """

    namespace: str
    shards: int = 1

    @property
    def app(self) -> str:
        return self.namespace.strip("{}")

    @cached_property
    def _prefixes(self) -> tuple[str, ...]:
        return _meter_prefixes(self.namespace, self.shards)

    def prefix(self, shard: int) -> str:
        """Key prefix of a meter shard: the namespace with one shard, else its hash tag."""
        return self._prefixes[shard]

    def shard_of(self, meter_id: str) -> int:
        return shard_of(meter_id, self.shards)

    def meter_prefix(self, meter_id: str) -> str:
        return self._prefixes[self.shard_of(meter_id)]

    def health(self, meter_id: str) -> str:
        """The meter's health hash (state, reasons, since)."""
        return f"{self.meter_prefix(meter_id)}:health:{meter_id}"

    def shard_state(self, shard: int, state: str) -> str:
        """The meters of one shard in a health state."""
        return f"{self._prefixes[shard]}:health:state:{state}"

    def state_sets(self, state: str) -> list[str]:
        """The sets of a health state, one per shard."""
        return [self.shard_state(k, state) for k in range(self.shards)]

    def windows(self, meter_id: str) -> str:
        """The meter's recent closed daily windows."""
        return f"{self.meter_prefix(meter_id)}:meter:{meter_id}:windows"

    def alerts(self, meter_id: str) -> str:
        """The meter's recent alerts."""
        return f"{self.meter_prefix(meter_id)}:meter:{meter_id}:alerts"

    def shard_day(self, shard: int, day: str, region: str | None = None) -> str:
        """The kWh ranking of one shard's meters on a UTC day (optionally of one region)."""
        return f"{self._prefixes[shard]}:kwh:{region}:{day}" if region else f"{self._prefixes[shard]}:kwh:{day}"

    def days(self, day: str, region: str | None = None) -> list[str]:
        """The rankings of a day, one per shard (a meter is in its own shard's)."""
        return [self.shard_day(k, day, region) for k in range(self.shards)]

    def patterns(self) -> list[str]:
        """``SCAN MATCH`` patterns of every per-meter key (health, windows and alerts, rankings)."""
        p = self.namespace if self.shards == 1 else f"{{{self.app}:m*}}"
        return [f"{p}:health:*", f"{p}:meter:*", f"{p}:kwh:*"]

    def day_pattern(self) -> str:
        """``SCAN MATCH`` pattern of the fleet-wide day rankings of every shard (``{p}:kwh:YYYY-MM-DD``)."""
        p = self.namespace if self.shards == 1 else f"{{{self.app}:m*}}"
        return f"{p}:kwh:????-??-??"

    def split(self, key: str) -> tuple[str, str] | None:
        """``(prefix, rest)`` of a per-meter key of this layout (``rest``: ``health:M1``, ``kwh:2026-01-05`` ...)."""
        if self.shards == 1:
            head = f"{self.namespace}:"
            return (self.namespace, key[len(head):]) if key.startswith(head) else None
        if not key.startswith(f"{{{self.app}:m"):
            return None
        prefix, sep, rest = key.partition("}:")
        return (prefix + "}", rest) if sep else None

    def by_shard(self, meter_ids: Iterable[str]) -> dict[int, list[str]]:
        """shard → the meter ids in it."""
        out: dict[int, list[str]] = defaultdict(list)
        for mid in meter_ids:
            out[self.shard_of(mid)].append(mid)
        return dict(out)


def meter_keys(settings: Settings) -> MeterKeys:
    """The per-meter key names of the app the settings describe (same shard count as the customer keys)."""
    return MeterKeys(settings.redis_namespace, settings.state_shards)
