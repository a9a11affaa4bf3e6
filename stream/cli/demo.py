"""``sluicegate demo``: topics, sample traffic and the processor on a local broker.

The sample events ship with the package (``stream/samples``), so the demo needs nothing
but a broker: ``make demo`` starts the local one first. The model is the configured one
(``OPENAI_API_KEY``), else the simulator, started in-process: no key, no cost.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from rich.console import Console
from rich.live import Live
from rich.table import Table

from handlers.base import Handler
from schemas.dlq import DlqEnvelope
from schemas.enriched import Alert, EnrichedEvent
from stream.cli.command import sluicegate_command
from stream.config import KafkaSettings, Ordering, Settings, load
from stream.kafka.admin import check_reachable, ensure_topics
from stream.model.cost import Tally
from stream.model.endpoint import model_service
from stream.model.service import ModelService
from stream.routes import build_routes
from stream.runtime.processor import Processor
from stream.secrets import mask_url
from stream.telemetry.logs import librdkafka_logger
from stream.telemetry.stats import Stats


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
Marks = dict[tuple[str, int], int]  # (topic, partition) -> offset
# Piped output (CI, `| less`) gets a fixed width that fits the tables; a terminal its own.
CONSOLE = Console(highlight=False, width=None if sys.stdout.isatty() else 150)


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
    producer = Producer({**kafka.client_config(), "enable.idempotence": True,
                         "logger": librdkafka_logger()})  # fmt: skip
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
    settings: Settings, expected: int, limit_s: float = 90.0
) -> tuple[Stats, ModelService, dict[str, Handler]]:
    """Run the processor until ``expected`` events are handled (or ``limit_s``), with a
    live view of what it does."""
    async with model_service(settings, latency_median_ms=300) as (service, where):
        if where == "the simulator":
            CONSOLE.print(
                f"==> the model: {settings.model.model}-simulated, the simulator started "
                "in-process: its answers show the plumbing, calls and tokens, not a real "
                "model's judgement (set OPENAI_API_KEY for that)"
            )
        else:
            CONSOLE.print(f"==> the model: {settings.model.model} via {mask_url(where)}")
        handlers = {r.settings.name: r.handler for r in build_routes(settings, model=service)}
        processor = Processor(settings, handlers, model=service, pause_while=[service.should_pause])
        return await _run(processor, service, handlers, expected, limit_s), service, handlers


async def _run(
    processor: Processor,
    service: ModelService,
    handlers: dict[str, Handler],
    expected: int,
    limit_s: float,
) -> Stats:
    task = asyncio.create_task(processor.run())
    started = time.monotonic()
    deadline = started + limit_s
    with Live(_view(processor, service, handlers, started), console=CONSOLE,
              refresh_per_second=8, transient=False) as live:  # fmt: skip
        while time.monotonic() < deadline and not task.done():
            s = processor.stats
            idle = all(p.load == 0 for p in processor.partitions.values())
            live.update(_view(processor, service, handlers, started))
            if s.consumed >= expected and idle:
                break
            await asyncio.sleep(0.125)
        processor.stop()
        await task
    CONSOLE.print()
    return processor.stats


def _tiers(handlers: dict[str, Handler]) -> Counter[str]:
    total: Counter[str] = Counter()
    for handler in handlers.values():
        total.update(getattr(handler, "tiers", {}))
    return total


def _view(
    processor: Processor, service: ModelService, handlers: dict[str, Handler], started: float
) -> Table:
    """What the processor is doing now: one small table, redrawn a few times a second."""
    s, elapsed = processor.stats, max(time.monotonic() - started, 1e-9)
    parts = list(processor.partitions.values())
    tiers, totals = _tiers(handlers), service.meter.totals()
    calls = sum(t.calls for t in service.meter.tallies.values())
    alerts = sum(sum(getattr(h, "alerts_raised", {}).values()) for h in handlers.values())
    table = Table(title=f"sluicegate, {elapsed:5.1f}s", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in (
        ("consumed", f"{s.consumed}  ({s.consumed / elapsed:,.0f} events/s)"),
        ("enriched", str(sum(tiers.values()))),
        ("dead-lettered", str(s.dead_lettered)),
        ("in flight", f"{sum(p.load for p in parts)}  ({sum(p.paused for p in parts)} "
                      f"of {len(parts)} partitions paused)"),
        ("answered by", f"local {tiers['local']}  cache {tiers['cache']}  "
                        f"model {tiers['model']}"),
        ("model calls", f"{calls:,.0f}  (limit {service.client.concurrency.limit:.0f} "
                        "in flight)"),
        ("tokens", f"{totals['prompt']:,.0f} in ({totals['cached']:,.0f} cached), "
                   f"{totals['completion']:,.0f} out"),
        ("dollars", f"${totals['usd']:.6f}"),
        ("alerts", str(alerts)),
    ):  # fmt: skip
        table.add_row(label, value)
    return table


def show_examples(kafka: KafkaSettings, dlq_topic: str, since: Marks) -> None:
    """A few enriched events beside their inputs, per route; the DLQ's first record."""
    table = Table(title="enriched events beside their inputs", show_lines=True)
    for column in ("route", "input", "answered by", "answer", "$"):
        table.add_column(column, overflow="fold")
    for stream in SAMPLES:
        for message in read_topic(kafka, f"{stream.topic}.enriched", 2, since):
            try:
                enriched = EnrichedEvent.model_validate_json(message.value() or b"")
            except ValueError:
                continue
            e = enriched.enrichment
            answer = {k: v for k, v in e.answer.items() if not isinstance(v, dict | list)}
            table.add_row(e.route, _text(enriched.event)[:120], f"{e.tier}\n{e.source}",
                          _text(answer)[:160], f"{e.cost_usd:.6f}")  # fmt: skip
    CONSOLE.print(table)
    dead = read_topic(kafka, dlq_topic, 1, since)
    if dead:
        envelope = DlqEnvelope.from_json(dead[0].value() or b"")
        CONSOLE.print(f"{dlq_topic}: {envelope.where} {envelope.error_class} "
                      f"({envelope.stage}): {envelope.error_message}", markup=False)  # fmt: skip
        CONSOLE.print(f"    original bytes kept: {(envelope.value or b'')[:80]!r}", markup=False)


def _text(value: object) -> str:
    if isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, dict | list))
    return str(value)


def show_alerts(kafka: KafkaSettings, topic: str, since: Marks) -> None:
    found = read_topic(kafka, topic, 3, since)
    alerts = [Alert.model_validate_json(m.value() or b"") for m in found]
    for alert in alerts:
        CONSOLE.print(f"{topic}: [{alert.severity}] {alert.kind} {alert.source or ''}: "
                      f"{alert.reason}", markup=False)  # fmt: skip


def _calls(shares: float) -> str:
    """Requests made: each event carries its share of a batched request (1/16 of one),
    so the sum is a whole number up to float error; show it as one."""
    return f"{round(shares):,d}"


def show_cost(service: ModelService, handlers: dict[str, Handler]) -> None:
    table = Table(title="per route: who answered, what it cost")
    for column in ("route", "handler", "local", "cache", "model", "calls", "tokens in",
                   "cached", "tokens out", "$"):  # fmt: skip
        table.add_column(column, justify="left" if column in {"route", "handler"} else "right")
    tallies = {route: t for (_, route), t in service.meter.tallies.items()}
    for route, handler in handlers.items():
        tiers = getattr(handler, "tiers", Counter())
        t = tallies.get(route) or Tally()
        table.add_row(route, handler.name, str(tiers["local"]), str(tiers["cache"]),
                      str(tiers["model"]), _calls(t.calls), f"{t.prompt:,.0f}",
                      f"{t.cached:,.0f}", f"{t.completion:,.0f}", f"{t.usd:.6f}")  # fmt: skip
    CONSOLE.print(table)


def high_watermarks(kafka: KafkaSettings, topics: Iterable[str]) -> Marks:
    """Where each partition of ``topics`` ends now: this run's records come after."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"demo-marks-{time.time_ns()}",
                         "logger": librdkafka_logger()})  # fmt: skip
    marks: Marks = {}
    try:
        listed = consumer.list_topics(timeout=10).topics
        for topic in topics:
            for partition in listed[topic].partitions:
                marks[topic, partition] = _high(consumer, TopicPartition(topic, partition))
    finally:
        consumer.close()
    return marks


def _high(consumer: Consumer, partition: TopicPartition, wait_s: float = 15.0) -> int:
    """A partition's high watermark; a topic created a moment ago may have no leader yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(partition, 5)[1])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_group_at(kafka: KafkaSettings, marks: Marks, topics: Iterable[str]) -> None:
    """Commit ``marks`` for the demo's fresh group, so its processor reads this run's
    samples only, not those earlier runs left on a broker that is kept between runs."""
    wanted = set(topics)
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": kafka.group_id,
            "enable.auto.commit": False,
            "logger": librdkafka_logger(),
        }
    )
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in marks.items()
                                 if t in wanted], asynchronous=False)  # fmt: skip
    finally:
        consumer.close()


def read_topic(
    kafka: KafkaSettings, topic: str, count: int, since: Marks | None = None
) -> list[Message]:
    """Up to ``count`` records of ``topic`` from ``since`` (else from the beginning)."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"demo-reader-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "logger": librdkafka_logger()})  # fmt: skip
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, (since or {}).get((topic, p), OFFSET_BEGINNING))
                     for p in partitions])  # fmt: skip
    found: list[Message] = []
    deadline = time.monotonic() + 5
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
    marks = high_watermarks(kafka, topics)
    counts = produce_samples(kafka)
    for topic, count in counts.items():
        print(f"==> produced {count:3d} sample events to {topic}")
    if produce_only:
        return 0
    demo = demo_settings(settings, kafka)
    start_group_at(demo.kafka, marks, counts)
    print(f"==> running the processor (group {demo.kafka.group_id}, at-least-once)")
    stats, service, handlers = asyncio.run(process(demo, sum(counts.values())))
    print(
        f"==> done: {stats.consumed} consumed, "
        f"{stats.consumed - stats.dead_lettered - stats.skipped} enriched, "
        f"{stats.dead_lettered} dead-lettered to {settings.dlq.topic}, nothing lost"
        if stats.consumed >= sum(counts.values())
        else f"==> stopped early: {stats}"
    )
    show_examples(kafka, settings.dlq.topic, marks)
    show_alerts(kafka, settings.alerts.topic, marks)
    show_cost(service, handlers)
    command = sluicegate_command()
    print(
        "\nlocal = the free local tier answered; cache = an identical earlier event's answer; "
        "otherwise the model id (ending in -simulated when the simulator answered).\n"
        f"Inspect the DLQ:  {command} dlq inspect --topic {settings.dlq.topic} "
        f"--bootstrap-servers {kafka.bootstrap_servers}\n"
        f"Kafka at {kafka.bootstrap_servers} is still running, with the demo topics: "
        "`make kafka-down` stops the broker `make demo` started and deletes its data "
        "(`make kafka-status` says whether it runs)."
    )
    return 0
