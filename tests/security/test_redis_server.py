"""The launcher's redis-server with an ACL user: only that user gets in, and the secret is not on the command line."""

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
