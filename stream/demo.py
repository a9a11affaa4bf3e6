"""``sluicegate demo``: topics, sample traffic and the processor on a local broker.

The sample events ship with the package (``stream/samples``), so the demo needs nothing
but a broker: ``make demo`` starts the local one first.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources

import orjson
from confluent_kafka import Producer

from stream.config import KafkaSettings, load
from stream.kafka.admin import check_reachable, ensure_topics


@dataclass(frozen=True)
class SampleStream:
    """One demo input: a sample file, the topic it is produced to, and its key field."""

    sample: str
    topic: str
    key_field: str | None


SAMPLES = (
    SampleStream("logs.txt", "demo.logs", None),
    SampleStream("reviews.jsonl", "demo.reviews", "product_id"),
    SampleStream("posts.jsonl", "demo.posts", "community"),
)
PARTITIONS = 3


def sample_records(stream: SampleStream) -> list[tuple[bytes | None, bytes]]:
    """(key, value) pairs for a sample file: one record per non-empty line, bytes as is."""
    text = resources.files("stream.samples").joinpath(stream.sample).read_bytes()
    records: list[tuple[bytes | None, bytes]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key = None
        if stream.key_field is not None:
            key = str(orjson.loads(line)[stream.key_field]).encode()
        records.append((key, line))
    return records


def produce_samples(kafka: KafkaSettings) -> dict[str, int]:
    """Produce every sample to its topic and wait for the acknowledgements."""
    producer = Producer({**kafka.client_config(), "enable.idempotence": True})
    failures: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    counts: dict[str, int] = {}
    for stream in SAMPLES:
        records = sample_records(stream)
        for key, value in records:
            producer.produce(stream.topic, value=value, key=key, on_delivery=on_delivery)
        counts[stream.topic] = len(records)
    remaining = producer.flush(30)
    producer.close()
    if remaining or failures:
        raise RuntimeError(f"{remaining} sample events unsent, {len(failures)} failed: {failures}")
    return counts


def run_demo(bootstrap_servers: str | None) -> int:
    settings = load()
    kafka = settings.kafka
    if bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    print(f"==> Kafka at {kafka.bootstrap_servers}: {check_reachable(kafka)} broker(s)")
    topics = {s.topic: PARTITIONS for s in SAMPLES}
    topics |= {f"{s.topic}.enriched": PARTITIONS for s in SAMPLES}
    topics |= {settings.dlq.topic: 1, settings.alerts.topic: 1}
    created = ensure_topics(kafka, topics)
    print(f"==> topics ready ({len(created)} created): {', '.join(sorted(topics))}")
    for topic, count in produce_samples(kafka).items():
        print(f"==> produced {count:3d} sample events to {topic}")
    print(
        "\nThis build stops here: the processor that enriches these events is not part of "
        "it yet, so nothing was consumed and no enriched events were written.\n"
        f"Read the samples back with:  kcat -b {kafka.bootstrap_servers} -C -t demo.reviews -e",
        file=sys.stderr,
    )
    return 0
