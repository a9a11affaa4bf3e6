"""The baseline: the simplest confluent-kafka consume -> produce loop a person would write.

No framework, no per-event bookkeeping: consume batches, produce each message's key and
value, serve delivery reports now and then, commit consumed positions asynchronously
about once a second, flush at the end.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, Message, Producer

from tests.bench.workload import BrokenRun, fresh_name

VARIANT = "plain loop"


def run_plain(bootstrap: str, source: str, output: str, n: int, timeout: float) -> float:
    """Copy ``n`` events from ``source`` to ``output``; return the events per second from
    the first consumed message to the last delivery acknowledged."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": fresh_name("plain"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    acked = 0
    failed: list[KafkaError] = []
    last_ack = 0.0

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        nonlocal acked, last_ack
        if err is None:
            acked += 1
        else:
            failed.append(err)
        last_ack = time.monotonic()

    consumer.subscribe([source])
    consumed = 0
    first: float | None = None
    last_commit = time.monotonic()
    deadline = last_commit + timeout
    try:
        while consumed < n:
            if time.monotonic() > deadline:
                raise BrokenRun(f"{VARIANT}: only {consumed} of {n} consumed in {timeout:.0f}s")
            for msg in consumer.consume(500, 0.5):
                if msg.error() is not None:
                    raise BrokenRun(f"{VARIANT}: consuming: {msg.error()}")
                if first is None:
                    first = time.monotonic()
                while True:
                    try:
                        producer.produce(output, msg.value(), msg.key(), on_delivery=delivered)
                        break
                    except BufferError:  # librdkafka's queue is full: serve reports, retry
                        producer.poll(0.01)
                consumed += 1
            producer.poll(0)
            if time.monotonic() - last_commit >= 1.0:
                consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
        left = producer.flush(timeout)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    if left or failed or acked != n or first is None:
        raise BrokenRun(
            f"{VARIANT}: {acked} of {n} deliveries acknowledged, {left} still queued, "
            f"errors: {failed[:3]}"
        )
    return n / (last_ack - first)
