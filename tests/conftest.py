"""Shared fixtures: one real Kafka broker per test session, random topics and groups.

The broker comes from, in order: ``KAFKA_BOOTSTRAP_SERVERS``; the local Apache Kafka
broker of ``ops/kafka`` (Java 17 + Maven); testcontainers' Kafka module when a Docker
engine answers. With none of them the Kafka tests fail loudly rather than skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from ops.kafka import broker as local_kafka
from stream.config import KafkaSettings
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings

TopicFactory = Callable[..., str]


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Address of a real broker for the whole session."""
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if explicit:
        yield explicit
        return
    if shutil.which("java") and (shutil.which("mvn") or local_kafka.cache_dir().exists()):
        with local_kafka.running() as broker:
            yield broker.bootstrap
        return
    if _docker_answers():
        from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    pytest.fail(
        "no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS, install Java 17 and Maven for the "
        "local broker, or start a Docker engine for testcontainers"
    )


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for the session broker with a fresh consumer group for this test."""
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, group_id=f"g-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    """Create topics with random names; they are deleted after the test."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def factory(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        for future in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
            future.result(30)
        created.append(name)
        return name

    yield factory
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result(30)


@pytest_asyncio.fixture
async def simulator() -> AsyncIterator[str]:
    """A fast, seeded simulator on a free port; yields its ``/v1`` base URL."""
    async with running_simulator(SimulatorSettings(port=0, latency_median_ms=5, seed=11)) as url:
        yield url
