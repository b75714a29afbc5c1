"""Security settings: typed, validated, turned into client options, and never shown in a repr."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from meterseg.settings import KafkaSecurity, Settings
from stream.clients.security import faust_credentials, kafka_client_options, mask_url


def test_security_from_environment_and_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSEG_KAFKA_SECURITY__PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("METERSEG_KAFKA_SECURITY__USERNAME", "alice")
    monkeypatch.setenv("METERSEG_KAFKA_SECURITY__PASSWORD", "kafka-secret-123")
    monkeypatch.setenv("METERSEG_REDIS_URL", "redis://meterseg:redis-secret-456@127.0.0.1:6379/2")
    monkeypatch.setenv("METERSEG_API_TOKEN", "api-secret-789")
    s = Settings()
    assert s.kafka_security.protocol == "SASL_PLAINTEXT"
    assert s.kafka_security.sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka_security.password is not None
    assert s.kafka_security.password.get_secret_value() == "kafka-secret-123"
    assert s.redis_url.endswith("redis-secret-456@127.0.0.1:6379/2")  # the real value stays usable
    for shown in (repr(s), str(s), repr(s.kafka_security), f"{s!r}"):
        for secret in ("kafka-secret-123", "redis-secret-456", "api-secret-789"):
            assert secret not in shown
    assert "redis://meterseg:***@127.0.0.1:6379/2" in repr(s)

    options = kafka_client_options(s)
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "kafka-secret-123",
    }
    creds = faust_credentials(s)
    assert creds is not None and "kafka-secret-123" not in repr(creds)
    assert creds.protocol.value == "SASL_PLAINTEXT" and creds.mechanism.value == "SCRAM-SHA-512"  # type: ignore[attr-defined]


def test_plaintext_default_changes_nothing() -> None:
    assert kafka_client_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs a username and a password"):
        KafkaSecurity(protocol="SASL_SSL", username="alice")
    with pytest.raises(ValidationError):
        KafkaSecurity(protocol="TLS")
    with pytest.raises(ValidationError, match="needs its key"):
        KafkaSecurity(protocol="SSL", ssl_certfile=Path("client.pem"))


def test_ssl_options_carry_a_verifying_context() -> None:
    s = Settings(kafka_security=KafkaSecurity(protocol="SASL_SSL", username="a", password="p", ssl_check_hostname=False))
    options = kafka_client_options(s)
    ctx = options["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname is False
    assert options["security_protocol"] == "SASL_SSL"
    creds = faust_credentials(s)
    assert creds is not None and creds.protocol.value == "SASL_SSL"
    tls_only = kafka_client_options(Settings(kafka_security=KafkaSecurity(protocol="SSL")))
    assert set(tls_only) == {"security_protocol", "ssl_context"}
    assert tls_only["ssl_context"].check_hostname is True


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:p%40ss@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://token-only@host:6379", "redis://***@host:6379"),
        ("redis://host:6379/0?password=pw&db=2", "redis://host:6379/0?password=***&db=2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
