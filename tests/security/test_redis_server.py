"""The launcher's redis-server with an ACL user or TLS: only the right credentials and clients get in."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from meterseg.stack import RedisNode
from tests.integration.harness import free_port

pytestmark = pytest.mark.integration


def test_acl_user_only(tmp_path: Path) -> None:
    node = RedisNode(state_dir=tmp_path, port=free_port(), appendonly=False, password="acl-pw-31337", username="meterseg")
    assert node.url == f"redis://meterseg:acl-pw-31337@127.0.0.1:{node.port}/0"
    assert "acl-pw-31337" not in repr(node)
    node.up(timeout_s=30)
    try:
        client = redis.Redis.from_url(node.url)
        assert client.acl_whoami() in ("meterseg", b"meterseg")
        client.close()
        for url in (f"redis://127.0.0.1:{node.port}/0", f"redis://:acl-pw-31337@127.0.0.1:{node.port}/0"):
            anonymous = redis.Redis.from_url(url)  # the default user is switched off
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
            anonymous.close()
        pid = node.process.read_pid()
        assert pid is not None
        assert b"acl-pw-31337" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    finally:
        node.down()


def test_tls_with_password(tmp_path: Path) -> None:
    import asyncio

    import redis.asyncio as aioredis

    node = RedisNode(state_dir=tmp_path, port=free_port(), appendonly=False, password="tls-pw-4242", tls=True)
    assert node.url.startswith(f"rediss://:tls-pw-4242@127.0.0.1:{node.port}/0?ssl_ca_certs=")
    node.up(timeout_s=30)
    try:
        client = redis.Redis.from_url(node.url)
        assert client.ping()
        client.close()

        async def async_ping() -> bool:  # the worker's client
            aclient = aioredis.Redis.from_url(node.url)
            try:
                return bool(await aclient.ping())
            finally:
                await aclient.aclose()

        assert asyncio.run(async_ping())
        plain = redis.Redis.from_url(f"redis://:tls-pw-4242@127.0.0.1:{node.port}/0", socket_timeout=3)
        with pytest.raises(redis.ConnectionError):  # the server speaks only TLS
            plain.ping()
        plain.close()
        untrusted = redis.Redis.from_url(f"rediss://:tls-pw-4242@127.0.0.1:{node.port}/0", socket_timeout=3)
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.ping()
        untrusted.close()
    finally:
        node.down()
