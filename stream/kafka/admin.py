"""Topic creation and reachability checks, run before the processor starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.config import KafkaSettings
from stream.errors import KafkaUnavailable
from stream.logs import librdkafka_logger


def admin_client(kafka: KafkaSettings) -> AdminClient:
    # librdkafka's own log through ours, once per state (not ~25 lines a second of
    # "Connection refused" while the broker is down).
    conf: dict[str, Any] = {**kafka.client_config(), "logger": librdkafka_logger()}
    return AdminClient(conf)


def check_reachable(kafka: KafkaSettings, timeout: float = 10.0) -> int:
    """Return the number of brokers the cluster reports, or raise ``KafkaUnavailable``."""
    try:
        metadata = admin_client(kafka).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {kafka.bootstrap_servers} did not answer within {timeout:.0f}s "
            f"({exc.args[0]}); check kafka.bootstrap_servers and the security settings"
        ) from None
    return len(metadata.brokers)


def ensure_topics(
    kafka: KafkaSettings, topics: Mapping[str, int], timeout: float = 30.0
) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet; return those created."""
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {kafka.bootstrap_servers} did not answer ({exc.args[0]})"
        ) from None
    missing = [
        NewTopic(name, num_partitions=n) for name, n in topics.items() if name not in existing
    ]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaUnavailable(f"could not create topic {name!r}: {exc.args[0]}") from None
    return created
