"""Small synchronous helpers for tests that read what really reached a topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer

from schemas.records import Headers
from stream.kafka.headers import message_headers


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) pairs and fail unless every one is acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[object] = []
    for key, value in records:
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, on_delivery=lambda e, _m: errors.append(e)
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
    assert producer.flush(30) == 0
    producer.close()
    assert [e for e in errors if e is not None] == []


def consume(
    bootstrap: str,
    topic: str,
    expected: int | None,
    *,
    timeout: float = 30.0,
    isolation: str = "read_uncommitted",
    idle_s: float = 3.0,
) -> list[Record]:
    """Read a topic from the start until ``expected`` records arrived or ``timeout``.

    ``expected=None`` reads everything: until nothing new came for ``idle_s`` seconds
    (at-least-once outputs hold duplicates, so a count cannot tell the end).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expected is not None and len(records) >= expected:
                break
            if expected is None and records and time.monotonic() - last_new > idle_s:
                break
            for msg in consumer.consume(500, 0.5):
                last_new = time.monotonic()
                if msg.error() is not None:
                    continue
                records.append(
                    Record(
                        msg.topic() or "",
                        msg.partition() or 0,
                        msg.offset() or 0,
                        msg.key(),
                        msg.value(),
                        message_headers(msg),
                    )
                )
    finally:
        consumer.close()
    return records
