"""The workload every variant gets: fresh topics pre-filled with the same 1 KB JSON
events, and a read-back that proves a run delivered each event exactly once.

A benchmark of a broken run is worthless, so every check here raises ``BrokenRun``.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from stream.config import KafkaSettings
from stream.kafka.admin import ensure_topics
from tests.kafkautil import produce

MESSAGE_BYTES = 1024
PARTITIONS = 3
KEYS = 1000  # distinct keys, spread over the partitions by the default partitioner
_WORDS = ("order", "refund", "login", "timeout", "error", "user", "payment", "retry", "slow")


class BrokenRun(RuntimeError):
    """A run did not deliver exactly the events it was given; its numbers are void."""


def key_of(event_id: int) -> bytes:
    return b"user-%d" % (event_id % KEYS)


def events(n: int, seed: int = 42) -> list[tuple[bytes | None, bytes]]:
    """``n`` (key, value) pairs; each value is a JSON object of exactly 1 KB with a unique
    ``id`` and varied text (so that compression behaves as on real data)."""
    rng = random.Random(seed)
    blob = " ".join(rng.choice(_WORDS) for _ in range(40_000))
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n):
        head = {"id": i, "user": f"user-{i % KEYS}", "ts": 1_760_000_000_000 + i, "text": ""}
        pad = MESSAGE_BYTES - len(orjson.dumps(head))
        start = rng.randrange(len(blob) - pad)
        head["text"] = blob[start : start + pad]
        out.append((key_of(i), orjson.dumps(head)))
    return out


def fresh_name(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: Iterable[str]) -> None:
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap), dict.fromkeys(names, PARTITIONS))


def delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(30)


def fill(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce ``records``; fails unless every one is acknowledged."""
    produce(bootstrap, topic, records)


def verify(bootstrap: str, topic: str, n: int, variant: str, timeout: float = 60.0) -> None:
    """Read ``topic`` (read_committed) to the end of every partition; raise ``BrokenRun``
    unless it holds each event id 0..n-1 exactly once, keyed as its input was."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": fresh_name("verify"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    ids: list[int] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < PARTITIONS:
            if time.monotonic() > deadline:
                raise BrokenRun(f"{variant}: reading {topic} back took over {timeout:.0f}s")
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise BrokenRun(f"{variant}: reading {topic} back: {err}")
                    at_end.add(msg.partition() or 0)
                    continue
                event_id = int(orjson.loads(msg.value() or b"{}")["id"])
                if msg.key() != key_of(event_id):
                    raise BrokenRun(f"{variant}: event {event_id} came out with key {msg.key()!r}")
                ids.append(event_id)
    finally:
        consumer.close()
    if len(ids) != n or set(ids) != set(range(n)):
        raise BrokenRun(
            f"{variant}: {topic} holds {len(ids)} outputs ({len(set(ids))} distinct events); "
            f"expected each of the {n} events exactly once"
        )
