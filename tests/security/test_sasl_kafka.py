"""Kafka with SASL (SCRAM-SHA-512), plain and over TLS: the right credentials connect, wrong ones are refused."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from meterseg.settings import Settings
from stream.clients.security import kafka_client_options
from stream.topics import ensure_topics
from tests.security.conftest import SecureStack

pytestmark = pytest.mark.integration


def test_scram_user_connects_and_creates_topics(secure_stack: SecureStack) -> None:
    settings = secure_stack.settings("sasl-ok")
    created = asyncio.run(ensure_topics(settings))
    assert settings.topics.readings in created

    async def produce() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=secure_stack.sasl_bootstrap, **kafka_client_options(settings))
        await producer.start()
        try:
            meta = await producer.send_and_wait(settings.topics.readings, b"{}", key=b"m1")
            return int(meta.offset)
        finally:
            await producer.stop()

    assert asyncio.run(produce()) == 0


@pytest.mark.parametrize("who", ["wrong password", "unknown user"])
def test_wrong_credentials_are_refused(secure_stack: SecureStack, who: str, caplog: pytest.LogCaptureFixture) -> None:
    security = secure_stack.security(password="not-the-password")
    if who == "unknown user":
        security = security.model_copy(update={"username": "mallory", "password": secure_stack.security().password})
    settings = Settings(kafka_bootstrap=secure_stack.sasl_bootstrap, kafka_security=security)

    async def connect() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000, **kafka_client_options(settings)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=20)
            await admin.list_topics()
        finally:
            await admin.close()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())
    assert "SaslAuthenticationFailed" in caplog.text  # aiokafka logs the broker's reason


def test_tls_listener_verifies_the_broker_certificate(secure_stack: SecureStack, caplog: pytest.LogCaptureFixture) -> None:
    trusted = Settings(kafka_bootstrap=secure_stack.bootstrap("SASL_SSL"), kafka_security=secure_stack.security("SASL_SSL"))

    async def topics(settings: Settings) -> set[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000, **kafka_client_options(settings)
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=20)
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert isinstance(asyncio.run(topics(trusted)), set)
    # without our CA the system trust store does not know the broker's certificate
    untrusted = trusted.model_copy(
        update={"kafka_security": trusted.kafka_security.model_copy(update={"ssl_cafile": None})}
    )
    with pytest.raises(KafkaConnectionError):
        asyncio.run(topics(untrusted))
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
