"""One behaviour model for the whole fleet: statistics in, versioned model out, through Redis.

Design (documented in README, "One model for the fleet"):

* every segmentation partition accumulates sufficient statistics of its
  assignments and pushes them (``RPUSH {ns}:model:stats``) every few seconds;
* exactly one worker at a time is the *model owner*: it holds a lease
  (``SET {ns}:model:owner <worker> NX PX``, renewed while alive, taken over
  by another worker when it lapses); the owner pops the pending statistics,
  merges them (:class:`processors.clustering.model.ModelOwner`) and, when
  the model changes, stores the new version (``{ns}:model`` snapshot and
  ``{ns}:model:version``) and its own state (for a successor);
* every worker polls the version and swaps in a newer model.

The model, its version and the owner's state survive restarts in Redis; a restored owner runs with the
current settings (:data:`OWNER_SETTINGS`, from the worker's ``owner_factory``), except ``k``: the model's
clusters are built on it (partitions refuse a changed k at start). An owner state of an
older format (:class:`~processors.clustering.model.ModelStateOutdated`) is not read: the new owner
re-seeds, with cluster ids and model versions continuing after the old ones.
Statistics popped by an owner that dies before storing the next version are
lost: they are a few seconds of summaries, and the next flushes replace them.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors.clustering.model import ClusterModel, ClusterStats
from processors.clustering.owner import ModelEvent, ModelOwner, ModelStateOutdated
from processors.jsonbytes import dumps
from stream.metrics import MODEL_VERSION, REDIS_LATENCY

log = logging.getLogger(__name__)

LEASE_MS = 15_000

OWNER_SETTINGS = (
    "halflife_updates", "min_seed_samples", "sample_cap", "refresh_every", "refresh_every_days", "refresh_gain",
    "refresh_until_days", "seeder", "seed_n_init", "match_radius", "guard_online", "name_freeze_updates",
)
"""Owner settings a restored owner takes from the current ones (the rest of its state is data)."""


def follow_settings(owner: ModelOwner, current: ModelOwner) -> list[str]:
    """Give a restored ``owner`` the settings of ``current`` (a fresh owner from the settings); what changed."""
    changed = []
    for name in OWNER_SETTINGS:
        if getattr(owner, name) != getattr(current, name):
            setattr(owner, name, getattr(current, name))
            changed.append(name)
    for name in ("rename_radius", "small_share"):
        if getattr(owner.naming, name) != getattr(current.naming, name):
            setattr(owner.naming, name, getattr(current.naming, name))
            changed.append(name)
    if owner.k != current.k:
        log.warning("the fleet model has k=%d clusters, the settings say %d: k stays %d (a new k needs a fresh "
                    "app: a new METERSEG_APP_ID)", owner.k, current.k, owner.k)  # fmt: skip
    return changed


class ModelExchange:
    def __init__(self, client: aioredis.Redis, namespace: str, owner_factory: Any):
        self.client = client
        self.ns = namespace
        self.worker_id = uuid.uuid4().hex[:12]
        self.owner_factory = owner_factory
        self.owner: ModelOwner | None = None
        self.model: ClusterModel | None = None

    async def push_stats(self, stats: list[ClusterStats]) -> None:
        useful = [s for s in stats if not s.empty_stats]
        if useful:
            await self.client.rpush(
                f"{self.ns}:model:stats",
                *[dumps(s.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY) for s in useful],
            )

    async def _hold_lease(self) -> bool:
        key = f"{self.ns}:model:owner"
        if await self.client.set(key, self.worker_id, nx=True, px=LEASE_MS):
            return True
        current = await self.client.get(key)
        if current is not None and (current.decode() if isinstance(current, bytes) else current) == self.worker_id:
            await self.client.pexpire(key, LEASE_MS)
            return True
        return False

    async def run_owner(self) -> list[ModelEvent]:
        """If this worker holds the lease, fold pending statistics into the model; return new versions."""
        if not await self._hold_lease():
            self.owner = None
            return []
        if self.owner is None:
            raw = await self.client.get(f"{self.ns}:model:owner_state")
            try:
                if raw:
                    self.owner = ModelOwner.restore(orjson.loads(raw))
                    changed = follow_settings(self.owner, self.owner_factory())
                    if changed:
                        log.info("behaviour model owner restored with changed settings: %s", ", ".join(changed))
                else:
                    self.owner = self.owner_factory()
            except ModelStateOutdated as outdated:  # written by an older version: re-seed, ids and versions go on
                log.warning("%s", outdated)
                self.owner = self.owner_factory().continue_after(outdated)
            log.info("this worker (%s) owns the fleet behaviour model", self.worker_id)
        started = time.perf_counter()
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(f"{self.ns}:model:stats", 0, -1)
        pipe.delete(f"{self.ns}:model:stats")
        raw_stats, _ = await pipe.execute()
        if not raw_stats:
            return []
        events = self.owner.process([ClusterStats.restore(orjson.loads(r)) for r in raw_stats])
        if events and self.owner.model is not None:
            model = self.owner.model
            pipe = self.client.pipeline(transaction=True)
            pipe.set(f"{self.ns}:model", dumps(model.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY))
            pipe.set(f"{self.ns}:model:version", model.version)
            pipe.set(
                f"{self.ns}:model:owner_state",
                dumps(self.owner.snapshot(), option=orjson.OPT_SERIALIZE_NUMPY),
            )
            await pipe.execute()
            log.info("behaviour model version %d (%s)", model.version, events[-1].reason)
        REDIS_LATENCY.labels("model_owner").observe(time.perf_counter() - started)
        return events

    async def fetch(self) -> ClusterModel | None:
        """The newest fleet model if it is newer than the one we have, else None."""
        raw_version = await self.client.get(f"{self.ns}:model:version")
        if raw_version is None:
            return None
        version = int(raw_version)
        if self.model is not None and self.model.version >= version:
            return None
        raw = await self.client.get(f"{self.ns}:model")
        if raw is None:
            return None
        self.model = ClusterModel.restore(orjson.loads(raw))
        MODEL_VERSION.set(self.model.version)
        return self.model
