"""Redis clients for every meterseg process: one server or a Redis Cluster, from the settings.

``METERSEG_REDIS_URL`` names the server (credentials and TLS in the URL, see
README "Security"); with ``METERSEG_REDIS_CLUSTER=true`` it names any node of
a Redis Cluster and the clients are ``RedisCluster`` ones, which learn the
slot map from that node and follow it.

On a cluster a multi-key command runs only when all its keys hash to one slot.
The engine's app-wide scripts and transactions (the regional window partials and
their frontier, the model and its version, the RFM sketches) touch several keys
at once: :attr:`meterseg.settings.Settings.redis_namespace` is therefore
``{app_id}`` on a cluster (a hash tag: only the part in braces is hashed) and
plain ``app_id`` on one server (keys unchanged). The customer projection and the
segment member sets (the per-customer state) are spread over shard hash
tags ``{app_id:s<k>}`` (:mod:`stream.state.keys`): a customer's keys share its
shard's slot, the shards spread over the masters. The partition checkpoints are
self-contained (only the checkpoint store touches them, each partition's on its
own) and stay named by the plain ``app_id``: they spread over the masters too.

Examples:
    >>> from meterseg.settings import Settings
    >>> Settings(app_id="fleet").redis_namespace, Settings(app_id="fleet", redis_cluster=True).redis_namespace
    ('fleet', '{fleet}')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis

    from meterseg.settings import Settings

__all__ = ["app_key_patterns", "async_redis", "sync_redis"]


def app_key_patterns(settings: Settings) -> list[str]:
    """``SCAN MATCH`` patterns covering every Redis key of the app (to list or remove them all).

    The shared state is under :attr:`~meterseg.settings.Settings.redis_namespace`; the checkpoints
    under the plain app id, and keys derived from a checkpoint's name may carry it as a hash tag; the
    customer shards under ``{app:s<k>}`` and the meter shards under ``{app:m<k>.<salt>}``
    (:mod:`stream.state.keys`), which ``{app:*`` covers.

    Examples:
        >>> from meterseg.settings import Settings
        >>> app_key_patterns(Settings(app_id="fleet"))
        ['fleet:*', '{fleet:*']
        >>> app_key_patterns(Settings(app_id="fleet", redis_cluster=True))
        ['{fleet}:*', 'fleet:*', '{fleet:*']
    """
    ns, app = settings.redis_namespace, settings.app_id
    patterns = [f"{ns}:*"]
    if ns != app:
        patterns.append(f"{app}:*")
    patterns.append(f"{{{app}:*")
    return patterns


def _timeouts(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the settings' socket and connect timeouts unless given: a Redis that stops answering
    (network partition, a stalled failover) fails a command after a bounded time instead of hanging a worker."""
    return {
        "socket_timeout": settings.redis_socket_timeout_s,
        "socket_connect_timeout": settings.redis_connect_timeout_s,
        **options,
    }


def async_redis(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``settings.redis_url``: a ``RedisCluster`` when ``settings.redis_cluster``.

    Typed as :class:`redis.asyncio.Redis`: the cluster client offers the same commands, pipelines
    (transactions with keys of one slot), scripts (routed by their first key) and ``scan_iter``
    (over every master), which is all meterseg uses. Socket and connect timeouts come from the settings.
    """
    options = _timeouts(settings, options)
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        client: Any = RedisCluster.from_url(settings.redis_url, **options)
        return client
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(settings.redis_url, **options)


def sync_redis(settings: Settings, **options: Any) -> redis.Redis:
    """A blocking client for ``settings.redis_url`` (tools, the demo, tests): a ``RedisCluster`` on a cluster."""
    options = _timeouts(settings, options)
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        client: Any = RedisCluster.from_url(settings.redis_url, **options)
        return client
    import redis

    return redis.Redis.from_url(settings.redis_url, **options)
