"""Topic creation and reachability checks, run before the processor starts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from stream.config import KafkaSettings
from stream.errors import ConfigError, KafkaUnavailable
from stream.kafka.sink import producer_config
from stream.kafka.source import consumer_config
from stream.telemetry.logs import librdkafka_logger


def admin_client(kafka: KafkaSettings) -> AdminClient:
    # librdkafka's own log through ours, once per state (not ~25 lines a second of
    # "Connection refused" while the broker is down).
    conf: dict[str, Any] = {**kafka.client_config(), "logger": librdkafka_logger()}
    return AdminClient(conf)


_QUIET = logging.getLogger("sluicegate.kafka.option-check")
_QUIET.disabled = True  # the throwaway clients' connection attempts are not news
LIBRDKAFKA_OPTIONS = "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"


def check_client_options(kafka: KafkaSettings) -> None:
    """``ConfigError`` naming the option when librdkafka refuses the client settings (a
    misspelt name in ``kafka.consumer_extra`` / ``producer_extra``, a value of the wrong
    kind, an unreadable certificate). librdkafka alone knows its options, so a client is
    made and dropped; ``run`` and ``config check`` both call this before anything starts."""
    bare = kafka.model_copy(update={"consumer_extra": {}, "producer_extra": {}})
    configs = (
        ("consumer_extra", Consumer, consumer_config),
        ("producer_extra", Producer, _producer_config),
    )
    for key, make, config in configs:
        reason = _refused(make, config(kafka))
        if reason is None:
            continue
        where = "kafka"
        if _refused(make, config(bare)) is None:  # one of the map's options: which one
            extra: dict[str, Any] = getattr(kafka, key)
            for name, value in extra.items():
                alone = bare.model_copy(update={key: {name: value}})
                if _refused(make, config(alone)) is not None:
                    where = f'kafka.{key}."{name}"'
                    break
        raise ConfigError(
            f"{where}: librdkafka refused the client settings: {reason} (its options: "
            f"{LIBRDKAFKA_OPTIONS})"
        )


def _producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    return producer_config(kafka, transactional_id=None, transaction_timeout_ms=60000)


def _refused(make: type[Consumer] | type[Producer], conf: Mapping[str, Any]) -> str | None:
    """librdkafka's reason for refusing ``conf``, or None when it takes it."""
    try:
        client = make({**conf, "logger": _QUIET})
    except KafkaException as exc:
        return str(exc.args[0].str())
    if isinstance(client, Consumer):
        client.close()
    return None


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
    kafka: KafkaSettings,
    topics: Mapping[str, int],
    timeout: float = 30.0,
    config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet, with the topic
    ``config`` given; return those created."""
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {kafka.bootstrap_servers} did not answer ({exc.args[0]})"
        ) from None
    missing = [
        NewTopic(name, num_partitions=n, config=dict(config or {}))
        for name, n in topics.items()
        if name not in existing
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


# What a raw dead letter adds to the original record: our headers, with room to spare.
DEAD_LETTER_HEADROOM_BYTES = 4096


def topic_limits(
    kafka: KafkaSettings, topics: Iterable[str], timeout: float = 10.0
) -> dict[str, int]:
    """``max.message.bytes`` of each existing topic (missing ones are left out)."""
    admin = admin_client(kafka)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in sorted(set(topics) & existing)]
    if not wanted:
        return {}
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(wanted, request_timeout=timeout).items():
        entry = future.result(timeout).get("max.message.bytes")
        if entry is not None and entry.value is not None:
            limits[resource.name] = int(entry.value)
    return limits


def record_limit_problems(
    inputs: Mapping[str, int],
    outputs: Mapping[str, int],
    dlq: tuple[str, int | None],
    producer: int,
) -> list[str]:
    """What the topics' and the producer's record limits mean for the largest input:
    each problem names the setting to change (an empty list: every dead letter fits)."""
    if not inputs:
        return []
    source, largest = max(inputs.items(), key=lambda item: item[1])
    need = largest + DEAD_LETTER_HEADROOM_BYTES
    dlq_topic, dlq_limit = dlq
    short = []
    if producer < need:
        short.append(
            f'the producer sends at most {producer} (set kafka.producer_extra."message.max.bytes" '
            f"to at least {need})"
        )
    if dlq_limit is not None and dlq_limit < need:
        short.append(
            f"the DLQ topic {dlq_topic!r} takes at most {dlq_limit} (set its max.message.bytes "
            f"to at least {need})"
        )
    problems = []
    if short:
        problems.append(
            f"input topic {source!r} accepts records up to {largest} bytes, but "
            + " and ".join(short)
            + ": until then a larger event reaches the DLQ truncated, its original kept at "
            "its source offset"
        )
    small = sorted(t for t, limit in outputs.items() if limit < largest)
    if small:
        problems.append(
            f"output topic(s) {', '.join(small)} take less than {largest} bytes: an enriched "
            "event of a large input will be dead-lettered (raise their max.message.bytes)"
        )
    return problems


def partition_counts(
    kafka: KafkaSettings, topics: Iterable[str], timeout: float = 10.0
) -> dict[str, int]:
    """How many partitions each existing topic has (missing ones are left out)."""
    listed = admin_client(kafka).list_topics(timeout=timeout).topics
    return {t: len(listed[t].partitions) for t in topics if t in listed}
