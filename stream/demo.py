"""``sluicegate demo``: topics, sample traffic and the processor on a local broker.

The sample events ship with the package (``stream/samples``), so the demo needs nothing
but a broker: ``make demo`` starts the local one first. The model is the configured one
(``OPENAI_API_KEY``), else the simulator, started in-process: no key, no cost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer

from schemas.dlq import DlqEnvelope
from schemas.enriched import Alert, EnrichedEvent
from stream.config import KafkaSettings, Ordering, Settings, load
from stream.kafka.admin import check_reachable, ensure_topics
from stream.model.endpoint import model_service
from stream.model.service import ModelService
from stream.processor import Processor
from stream.stats import Stats


@dataclass(frozen=True)
class SampleStream:
    """One demo input: a sample file, the topic it is produced to, and its key field."""

    sample: str
    topic: str
    key_field: str | None
    ordering: Ordering
    handler: str
    options: dict[str, Any]


SAMPLES = (
    SampleStream("logs.txt", "demo.logs", None, "partition", "logs", {}),
    SampleStream("reviews.jsonl", "demo.reviews", "product_id", "key", "sentiment", {}),
    SampleStream("posts.jsonl", "demo.posts", "community", "unordered", "moderation",
                 {"policy": ["spam", "self-promotion"]}),
)  # fmt: skip
PARTITIONS = 3


def _key(line: bytes, field: str) -> bytes | None:
    try:
        return str(orjson.loads(line)[field]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None  # a malformed sample is sent as is: the demo shows it dead-lettered


def sample_records(stream: SampleStream) -> list[tuple[bytes | None, bytes]]:
    """(key, value) pairs for a sample file: one record per non-empty line, bytes as is."""
    text = resources.files("stream.samples").joinpath(stream.sample).read_bytes()
    return [
        (None if stream.key_field is None else _key(line, stream.key_field), line)
        for line in text.splitlines()
        if line.strip()
    ]


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


def demo_settings(base: Settings, kafka: KafkaSettings) -> Settings:
    """The demo's routes on the given cluster; a fresh group so every run starts over."""
    group = f"sluicegate-demo-{int(time.time())}"
    routes = [
        {"name": s.topic.split(".")[1], "input_topics": [s.topic], "handler": s.handler,
         "output_topic": f"{s.topic}.enriched", "ordering": s.ordering, "options": s.options}
        for s in SAMPLES
    ]  # fmt: skip
    return Settings(
        kafka=kafka.model_copy(update={"group_id": group}),
        routes=routes,
        processing={"commit_interval_ms": 200},
        dlq=base.dlq,
        alerts=base.alerts,
        model=base.model,
        budget=base.budget,
        metrics={"enabled": False},
        log={"level": "WARNING", "format": "console"},
    )


async def process(
    settings: Settings, expected: int, limit_s: float = 60.0
) -> tuple[Stats, ModelService]:
    """Run the processor until ``expected`` events are handled (or ``limit_s``)."""
    async with model_service(settings, latency_median_ms=300) as (service, where):
        print(f"==> the model: {settings.model.model} via {where}")
        processor = Processor(settings, model=service, pause_while=[service.should_pause])
        return await _run(processor, expected, limit_s), service


async def _run(processor: Processor, expected: int, limit_s: float) -> Stats:
    task = asyncio.create_task(processor.run())
    deadline = time.monotonic() + limit_s
    shown = -1
    while time.monotonic() < deadline and not task.done():
        s = processor.stats
        idle = all(p.load == 0 for p in processor.partitions.values())
        if s.consumed != shown:
            print(f"    consumed {s.consumed:3d}  enriched {s.produced - s.dead_lettered:3d}  "
                  f"dead-lettered {s.dead_lettered}")  # fmt: skip
            shown = s.consumed
        if s.consumed >= expected and idle:
            break
        await asyncio.sleep(0.25)
    processor.stop()
    await task
    return processor.stats


def show_examples(kafka: KafkaSettings, dlq_topic: str) -> None:
    """One input beside its enriched output per route, and the DLQ's first record."""
    for stream in SAMPLES:
        out = read_topic(kafka, f"{stream.topic}.enriched", 3)
        if out:
            print(f"\n  {stream.topic} -> {stream.topic}.enriched ({stream.handler})")
        for message in out:
            print(f"    {_summary(message.value() or b'')}")
    dead = read_topic(kafka, dlq_topic, 1)
    if dead:
        envelope = DlqEnvelope.from_json(dead[0].value() or b"")
        print(f"\n  {dlq_topic}: {envelope.where} {envelope.error_class} ({envelope.stage}): "
              f"{envelope.error_message}")  # fmt: skip
        print(f"    original bytes kept: {(envelope.value or b'')[:80]!r}")


def show_alerts(kafka: KafkaSettings, topic: str) -> None:
    alerts = [Alert.model_validate_json(m.value() or b"") for m in read_topic(kafka, topic, 3)]
    if alerts:
        print(f"\n  {topic}:")
    for alert in alerts:
        event = str(alert.enriched.event)[:80] if alert.enriched else ""
        print(f"    [{alert.severity}] {alert.kind} {alert.source or ''}: {alert.reason} {event}")


def _summary(value: bytes) -> str:
    """One line per enriched event: what answered, the answer, what it cost."""
    try:
        enriched = EnrichedEvent.model_validate_json(value)
    except ValueError:
        return value.decode(errors="replace")[:200]
    e = enriched.enrichment
    answer = {k: v for k, v in e.answer.items() if not isinstance(v, dict | list)}
    return (f"[{e.tier:5} {e.source}] {answer} ${e.cost_usd:.6f} "
            f"<- {str(enriched.event)[:60]}")  # fmt: skip


def show_cost(service: ModelService) -> None:
    print("\n  the cost meter:")
    for (handler, route), t in sorted(service.meter.tallies.items()):
        print(f"    {route:8} {handler:11} {t.events:3} events {t.calls:5.1f} calls "
              f"{t.prompt:8,.0f} prompt ({t.cached:,.0f} cached) {t.completion:6,.0f} output "
              f"tokens  ${t.usd:.6f}")  # fmt: skip


def read_topic(kafka: KafkaSettings, topic: str, count: int) -> list[Message]:
    consumer = Consumer({**kafka.client_config(), "group.id": f"demo-reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + 10
    try:
        while len(found) < count and time.monotonic() < deadline:
            found += [m for m in consumer.consume(count, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return found[:count]


def run_demo(bootstrap_servers: str | None, *, produce_only: bool = False) -> int:
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
    counts = produce_samples(kafka)
    for topic, count in counts.items():
        print(f"==> produced {count:3d} sample events to {topic}")
    if produce_only:
        return 0
    demo = demo_settings(settings, kafka)
    print(f"==> running the processor (group {demo.kafka.group_id}, at-least-once)")
    stats, service = asyncio.run(process(demo, sum(counts.values())))
    print(
        f"==> done: {stats.consumed} consumed, {stats.produced - stats.dead_lettered} enriched, "
        f"{stats.dead_lettered} dead-lettered to {settings.dlq.topic}, nothing lost"
        if stats.consumed >= sum(counts.values())
        else f"==> stopped early: {stats}"
    )
    show_examples(kafka, settings.dlq.topic)
    show_alerts(kafka, settings.alerts.topic)
    show_cost(service)
    print(
        "\nlocal = the free local tier answered; cache = an identical earlier event's answer; "
        "otherwise the model id.\n"
        f"Inspect the DLQ:  sluicegate dlq inspect --topic {settings.dlq.topic}   "
        f"(with SLUICEGATE_KAFKA__BOOTSTRAP_SERVERS={kafka.bootstrap_servers})"
    )
    return 0
