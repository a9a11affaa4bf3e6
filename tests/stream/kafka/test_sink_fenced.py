"""A transactional producer fenced by a newer instance (a replacement after a kill -9):
the fatal error reaches the next transactional call as ``ProducerFenced``, never kills the
thread that serves the producer's reports, and no traceback is printed."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from confluent_kafka import Producer

from stream.config import KafkaSettings
from stream.errors import ProducerFenced
from stream.kafka.sink import Sink
from stream.records import OutRecord
from tests.conftest import TopicFactory

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]


async def test_a_fenced_producer_keeps_serving_and_says_fenced(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    topic = make_topic("fenced", partitions=2)
    tid = f"fenced-{uuid.uuid4().hex[:8]}"
    sink = Sink(kafka, transactional_id=tid)
    await sink.start()
    died: list[threading.ExceptHookArgs] = []
    default_hook = threading.excepthook
    threading.excepthook = died.append
    try:
        sink.stage([OutRecord(topic, b"k", b"before", ())])
        newer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "transactional.id": tid})
        await asyncio.to_thread(newer.init_transactions, 30)  # fences the sink's producer
        # A partition the transaction does not hold yet: adding it is refused as fenced,
        # a fatal error that librdkafka reports while the sink's thread polls.
        sink.stage([OutRecord(topic, b"other-partition-key", b"after", ())] * 20)
        await asyncio.sleep(3)
        assert died == [], [f"{d.exc_type.__name__}: {d.exc_value}" for d in died]
        assert sink._poller is not None
        assert sink._poller.is_alive()
        with pytest.raises(ProducerFenced):
            await sink.commit_transaction([], {}, None)
        newer.flush(5)
    finally:
        threading.excepthook = default_hook
        await sink.close(wait_s=1)
