"""A transactional call that never returns (librdkafka's send_offsets_to_transaction can
wait for good for a group coordinator that went away, its timeout notwithstanding) gives
the producer up as ``ProducerStuck`` soon after the transaction timeout, instead of
holding the exactly-once commit, and with it the processor, for ever. A new producer with
the same transactional id then fences it: nothing of the stuck transaction is read."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer

from stream.config import KafkaSettings
from stream.errors import ProducerStuck
from stream.kafka import sink as sink_module
from stream.kafka.sink import Sink
from stream.records import OutRecord
from tests.conftest import TopicFactory

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]


class _Hanging:
    """The real producer, but ``send_offsets_to_transaction`` blocks until released."""

    def __init__(self, real: Any, release: threading.Event) -> None:
        self.real, self.release = real, release

    def send_offsets_to_transaction(self, *args: Any) -> None:
        self.release.wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _read_committed(kafka: KafkaSettings, topic: str) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "reader-"
                         + uuid.uuid4().hex[:8], "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})  # fmt: skip
    consumer.subscribe([topic])
    values: list[bytes] = []
    for _ in range(20):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            values.append(msg.value() or b"")
    consumer.close()
    return values


async def test_a_stuck_transactional_call_gives_the_producer_up(
    kafka: KafkaSettings, make_topic: TopicFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "STUCK_AFTER_S", 1.0)
    topic, source = make_topic("stuck-out"), make_topic("stuck-in")
    tid = f"stuck-{uuid.uuid4().hex[:8]}"
    group = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": kafka.group_id})
    metadata = group.consumer_group_metadata()
    release = threading.Event()
    sink = Sink(kafka, transactional_id=tid, transaction_timeout_ms=2000)
    await sink.start()
    real = sink._producer
    sink._producer = _Hanging(real, release)  # type: ignore[assignment]
    try:
        with pytest.raises(ProducerStuck, match="sending offsets to the transaction"):
            await asyncio.wait_for(
                sink.commit_transaction(
                    [OutRecord(topic, b"k", b"stuck", ())], {(source, 0): 1}, metadata
                ),
                30,
            )
        with pytest.raises(ProducerStuck):  # never used again
            await sink.commit_transaction([], {}, metadata)
        await asyncio.wait_for(sink.close(wait_s=1), 10)  # does not wait for the stuck call
        # ...and the thread left inside it cannot keep the process from exiting (the
        # interpreter joins every non-daemon thread, a ThreadPoolExecutor's included).
        stuck = [t for t in threading.enumerate() if t.name.startswith("sluicegate-txn")]
        assert stuck
        assert all(t.daemon for t in stuck)

        newer = Sink(kafka, transactional_id=tid, transaction_timeout_ms=2000)
        await newer.start()  # fences the stuck one; its transaction is aborted
        await newer.commit_transaction([OutRecord(topic, b"k", b"after", ())], {}, metadata)
        await newer.close()
        assert await asyncio.to_thread(_read_committed, kafka, topic) == [b"after"]
    finally:
        release.set()
        group.close()
