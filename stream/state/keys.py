"""Names of the per-customer Redis keys: the customer projection and the segment member sets, spread by shard.

One helper names them all (writers, the API, tools, tests), so the layout lives in one place.

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
