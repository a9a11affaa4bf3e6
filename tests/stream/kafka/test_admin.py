"""Topic creation and reachability against the real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from ops.kafka.broker import free_port
from stream.config import KafkaSettings
from stream.errors import KafkaUnavailable
from stream.kafka.admin import check_reachable, ensure_topics
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce

pytestmark = pytest.mark.kafka


def test_round_trip_on_the_real_broker(kafka: KafkaSettings, make_topic: TopicFactory) -> None:
    """Records produced to a topic are read back with keys, values and order intact."""
    topic = make_topic(partitions=1)
    sent = [(f"k{i}".encode(), f'{{"n": {i}}}'.encode()) for i in range(50)]
    produce(kafka.bootstrap_servers, topic, sent)
    got = consume(kafka.bootstrap_servers, topic, expected=50)
    assert [(r.key, r.value) for r in got] == sent
    assert [r.offset for r in got] == list(range(50))


def test_ensure_topics_creates_once(kafka: KafkaSettings) -> None:
    """Missing topics are created with the asked partitions; a second call creates none."""
    name = f"ensure-{kafka.group_id}"
    assert ensure_topics(kafka, {name: 3}) == [name]
    assert ensure_topics(kafka, {name: 3}) == []
    metadata = AdminClient({"bootstrap.servers": kafka.bootstrap_servers}).list_topics(timeout=10)
    assert len(metadata.topics[name].partitions) == 3


def test_reachable_counts_brokers(kafka: KafkaSettings) -> None:
    """A live cluster reports its one broker."""
    assert check_reachable(kafka) == 1


def test_unreachable_broker_names_the_address() -> None:
    """A dead address fails fast with an error that names it and says what to check."""
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(KafkaUnavailable, match=f"{dead}.*bootstrap_servers"):
        check_reachable(KafkaSettings(bootstrap_servers=dead), timeout=2)
