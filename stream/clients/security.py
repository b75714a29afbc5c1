"""Kafka authentication and encryption options for every client meterseg builds, and secret masking.

One function turns :class:`meterseg.settings.KafkaSecurity` into aiokafka
keyword arguments (:func:`kafka_client_options`), another into Faust broker
credentials (:func:`faust_credentials`), so the producers, consumers, admin
clients, the Faust app and the simulator all connect the same way.

Secrets stay secret: the password lives in a ``SecretStr`` until the moment a
client is built, and :func:`mask_url` hides the password of a Redis (or any)
URL before it is logged or shown.

Examples:
    >>> mask_url("redis://:hunter2@127.0.0.1:6379/0")
    'redis://:***@127.0.0.1:6379/0'
    >>> mask_url("rediss://meterseg:hunter2@redis.example:6380/1?ssl_cert_reqs=required")
    'rediss://meterseg:***@redis.example:6380/1?ssl_cert_reqs=required'
    >>> mask_url("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    import faust.types.auth

    from meterseg.settings import KafkaSecurity, Settings

__all__ = ["RedisAuthError", "check_redis", "faust_credentials", "kafka_client_options", "kafka_ssl_context", "mask_url"]

_MASK = "***"
_SECRET_QUERY_KEYS = {"password", "pass", "token", "secret"}


def mask_url(url: str) -> str:
    """``url`` with the password of its user info (and any ``password=`` query value) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{hostport}" if sep else f"{_MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, _MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def kafka_ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context: the configured CA (else the system's), the client certificate if any."""
    from aiokafka.helpers import create_ssl_context

    key_password = security.ssl_keyfile_password
    context = create_ssl_context(
        cafile=str(security.ssl_cafile) if security.ssl_cafile else None,
        certfile=str(security.ssl_certfile) if security.ssl_certfile else None,
        keyfile=str(security.ssl_keyfile) if security.ssl_keyfile else None,
        password=key_password.get_secret_value() if key_password is not None else None,
    )
    context.check_hostname = security.ssl_check_hostname
    return context


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin) from ``settings.kafka_security``.

    ``PLAINTEXT`` yields only ``security_protocol``; SASL adds the mechanism
    and credentials; SSL adds an ``ssl_context``.

    Examples:
        >>> from meterseg.settings import KafkaSecurity, Settings
        >>> kafka_client_options(Settings())
        {'security_protocol': 'PLAINTEXT'}
        >>> sec = KafkaSecurity(protocol="SASL_PLAINTEXT", username="alice", password="s3cret")
        >>> opts = kafka_client_options(Settings(kafka_security=sec))
        >>> sorted(opts), opts["sasl_mechanism"], opts["sasl_plain_username"]
        (['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol'], 'SCRAM-SHA-512', 'alice')
    """
    sec = settings.kafka_security
    options: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.uses_sasl:
        assert sec.password is not None  # checked by KafkaSecurity's validator
        options["sasl_mechanism"] = sec.sasl_mechanism
        options["sasl_plain_username"] = sec.username
        options["sasl_plain_password"] = sec.password.get_secret_value()
    if sec.uses_ssl:
        options["ssl_context"] = kafka_ssl_context(sec)
    return options


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust ``broker_credentials`` equal to :func:`kafka_client_options` (None for ``PLAINTEXT``)."""
    import faust

    sec = settings.kafka_security
    if sec.uses_sasl:
        assert sec.password is not None
        return faust.SASLCredentials(
            username=sec.username,
            password=sec.password.get_secret_value(),
            mechanism=sec.sasl_mechanism,
            ssl_context=kafka_ssl_context(sec) if sec.uses_ssl else None,
        )
    if sec.uses_ssl:
        return faust.SSLCredentials(kafka_ssl_context(sec))
    return None


class RedisAuthError(RuntimeError):
    """Redis refused this process's credentials (none, wrong, or without the needed ACL permissions)."""


async def check_redis(client: Any, url: str) -> None:
    """PING Redis through ``client``; if it refuses our credentials, raise :class:`RedisAuthError` saying what to fix.

    ``url`` is only used, masked, in the message.
    """
    from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError, ResponseError

    try:
        await client.ping()
    except (AuthenticationError, AuthorizationError, NoPermissionError) as exc:
        raise RedisAuthError(_redis_auth_message(url, exc)) from exc
    except ResponseError as exc:
        if not str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise
        raise RedisAuthError(_redis_auth_message(url, exc)) from exc


def _redis_auth_message(url: str, exc: Exception) -> str:
    return (
        f"Redis at {mask_url(url)} refused this worker's credentials ({type(exc).__name__}: {exc}). "
        "Put the password (and ACL user) in METERSEG_REDIS_URL: redis://:PASSWORD@host:port/db or "
        "redis://USER:PASSWORD@host:port/db (rediss:// for TLS)."
    )
