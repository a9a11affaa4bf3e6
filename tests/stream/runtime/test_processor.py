"""The runtime against the real broker: no loss, DLQ, ordering, backpressure, rebalance."""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import uuid
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from handlers.base import Handler, Result
from handlers.echo import EchoOptions
from schemas.dlq import DlqEnvelope
from schemas.enriched import Alert
from schemas.records import SourceRecord
from stream.cli.dlq import ReadStats, read_envelopes
from stream.config import KafkaSettings, LogSettings
from stream.dlq import is_raw
from stream.errors import DlqCapExceeded
from stream.kafka.headers import DLQ_ERROR_CLASS, DLQ_STAGE, PROCESSOR_VERSION, header
from stream.model.errors import ModelRequestRejected
from stream.runtime.processor import Processor
from stream.telemetry.logs import make_handler
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce
from tests.stream.harness import all_handled, run_until, settings_for, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]


def route(
    name: str, src: str, out: str, ordering: str = "key", **options: object
) -> dict[str, object]:
    return {"name": name, "input_topics": [src], "output_topic": out, "ordering": ordering,
            "options": options}  # fmt: skip


def committed(kafka: KafkaSettings, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": kafka.group_id})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return [tp.offset for tp in parts]
    finally:
        consumer.close()


def events(n: int, keys: int = 7) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % keys}".encode(), orjson.dumps({"id": i})) for i in range(n)]


async def test_every_event_enriched_and_committed(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """Each input becomes exactly one enriched output keyed like it, with trace headers,
    and the group's committed offsets reach the end of every partition."""
    src, out = make_topic("in", 3), make_topic("out", 3)
    produce(kafka.bootstrap_servers, src, events(600))
    processor = Processor(settings_for(kafka, [route("r", src, out)]))
    await run_until(processor, all_handled(600))

    got = consume(kafka.bootstrap_servers, out, 600)
    assert len(got) == 600
    assert len({source_of(r) for r in got}) == 600
    for r in got[:20]:
        body = orjson.loads(r.value or b"")
        assert body["echo"]["source"].startswith(src)
        assert r.key == f"k{body['id'] % 7}".encode()
        assert header(r.headers, PROCESSOR_VERSION)
    ends = collections.Counter(source_of(r)[1] for r in got)
    assert committed(kafka, src, 3) == [ends[p] for p in range(3)]
    assert processor.stats.dead_lettered == 0


async def test_poison_events_go_to_the_dlq_with_original_bytes(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """Undecodable events reach the DLQ with their exact bytes and the reason; the good
    events around them are enriched as usual."""
    src, out, dlq = make_topic("in"), make_topic("out"), make_topic("dlq")
    poison = [b"not json", b"\xff\xfe\x00bad", b"[1, 2]", b""]
    records = events(40)
    for i, value in enumerate(poison):
        records.insert(5 + 9 * i, (b"bad", value))
    produce(kafka.bootstrap_servers, src, records)
    settings = settings_for(kafka, [route("r", src, out)], dlq={"topic": dlq})
    processor = Processor(settings)
    await run_until(processor, all_handled(44))

    dead = consume(kafka.bootstrap_servers, dlq, 4)
    assert sorted(DlqEnvelope.from_json(r.value or b"").value or b"" for r in dead) == sorted(
        poison
    )
    for r in dead:
        envelope = DlqEnvelope.from_json(r.value or b"")
        assert envelope.error_class == "BadInput"
        assert envelope.stage == "decode"
        assert envelope.source_topic == src
        assert records[envelope.source_offset][1] == envelope.value
        assert r.key == b"bad"
        assert header(r.headers, DLQ_ERROR_CLASS) == b"BadInput"
        assert header(r.headers, DLQ_STAGE) == b"decode"
    assert len(consume(kafka.bootstrap_servers, out, 40)) == 40


async def test_dlq_cap_stops_the_processor(kafka: KafkaSettings, make_topic: TopicFactory) -> None:
    """With every event failing, the consecutive cap stops the processor with a clear
    error instead of draining the topic into the DLQ."""
    src, out, dlq = make_topic("in"), make_topic("out"), make_topic("dlq")
    produce(kafka.bootstrap_servers, src, [(None, b"garbage %d" % i) for i in range(200)])
    settings = settings_for(
        kafka, [route("r", src, out)], dlq={"topic": dlq, "max_consecutive": 10}
    )
    processor = Processor(settings)
    with pytest.raises(DlqCapExceeded, match="consecutive"):
        await run_until(processor, lambda p: False, limit_s=60)
    assert processor.stats.dead_lettered < 10
    assert committed(kafka, src, 1)[0] < 10
    assert len(consume(kafka.bootstrap_servers, dlq, 10, timeout=5)) < 10


class Probe(Handler):
    """Records which keys run concurrently and in which order events start."""

    name = "probe"

    def __init__(self, delay: float = 0.002) -> None:
        super().__init__(EchoOptions())
        self.delay = delay
        self.running: collections.Counter[bytes | None] = collections.Counter()
        self.overlaps = 0
        self.max_parallel = 0
        self.order: dict[bytes | None, list[int]] = collections.defaultdict(list)

    async def handle(self, record: SourceRecord) -> Result:
        self.running[record.key] += 1
        self.overlaps += self.running[record.key] > 1
        self.max_parallel = max(self.max_parallel, sum(self.running.values()))
        self.order[record.key].append(record.offset)
        await asyncio.sleep(self.delay)
        self.running[record.key] -= 1
        return Result(record.value)


async def test_key_mode_orders_each_key(kafka: KafkaSettings, make_topic: TopicFactory) -> None:
    """Key mode never runs two events of one key at once and keeps their order, while
    different keys do run in parallel."""
    src, out = make_topic("in"), make_topic("out")
    produce(kafka.bootstrap_servers, src, events(300, keys=5))
    probe = Probe()
    processor = Processor(settings_for(kafka, [route("r", src, out, "key")]), {"r": probe})
    await run_until(processor, all_handled(300))
    assert probe.overlaps == 0
    assert probe.max_parallel > 1
    for offsets in probe.order.values():
        assert offsets == sorted(offsets)
    got = consume(kafka.bootstrap_servers, out, 300)
    per_key: dict[bytes | None, list[int]] = collections.defaultdict(list)
    for r in got:
        per_key[r.key].append(source_of(r)[2])
    assert all(v == sorted(v) for v in per_key.values())


async def test_partition_mode_is_one_at_a_time(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """Partition mode runs one event at a time per partition."""
    src, out = make_topic("in"), make_topic("out")
    produce(kafka.bootstrap_servers, src, events(60))
    probe = Probe()
    processor = Processor(settings_for(kafka, [route("r", src, out, "partition")]), {"r": probe})
    await run_until(processor, all_handled(60))
    assert probe.max_parallel == 1


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_backpressure_pauses_and_bounds_memory(
    kafka: KafkaSettings, make_topic: TopicFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slow handler facing a backlog: partitions are paused and resumed, events held
    in memory stay under the bound, resident memory stays flat, the member stays."""
    src, out = make_topic("in", 2), make_topic("out", 2)
    payload = b"x" * 900
    produce(kafka.bootstrap_servers, src,
            [(b"k%d" % i, orjson.dumps({"id": i, "pad": payload.decode()}))
             for i in range(4000)])  # fmt: skip
    bound, per_partition, batch = 200, 100, 50
    settings = settings_for(
        kafka,
        [route("r", src, out, "unordered", delay_ms=5)],
        processing={"max_in_flight": bound, "max_in_flight_per_partition": per_partition,
                    "max_poll_records": batch},
    )  # fmt: skip
    processor = Processor(settings)
    samples: list[tuple[int, float]] = []

    def sample(p: Processor) -> None:
        samples.append((sum(part.load for part in p.partitions.values()), rss_mb()))

    await run_until(processor, all_handled(4000), limit_s=120, during=sample)
    loads = [load for load, _ in samples]
    assert max(loads) <= bound + batch
    assert processor.stats.pauses > 0
    assert processor.stats.resumes > 0
    third = len(samples) // 3
    early = max(rss for _, rss in samples[:third])
    late = max(rss for _, rss in samples[-third:])
    with capsys.disabled():
        print(f"\n  backpressure: max in memory {max(loads)} events (bound {bound}), "
              f"RSS first third {early:.1f} MB, last third {late:.1f} MB")  # fmt: skip
    assert late - early < 25, "resident memory grew while the backlog was processed"
    assert len(consume(kafka.bootstrap_servers, out, 4000, timeout=60)) == 4000


async def test_rebalance_loses_nothing(kafka: KafkaSettings, make_topic: TopicFactory) -> None:
    """Two processors in one group; one leaves mid-stream: every event is enriched at
    least once and every partition's committed offset reaches its end."""
    src, out = make_topic("in", 4), make_topic("out", 4)
    n = 3000
    produce(kafka.bootstrap_servers, src, events(n))
    # Small bounds: the first member must not have fetched everything when it leaves.
    settings = settings_for(
        kafka,
        [route("r", src, out, "key", delay_ms=5)],
        processing={"max_in_flight": 300, "max_in_flight_per_partition": 100,
                    "max_poll_records": 50},
    )  # fmt: skip
    first, second = Processor(settings), Processor(settings)
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.assigned.wait(), 30)
    while first.stats.consumed == 0:  # noqa: ASYNC110 - polls counters
        await asyncio.sleep(0.05)

    async def leave_midway() -> None:
        while first.stats.consumed + second.stats.consumed < n // 3:  # noqa: ASYNC110 - polls counters
            await asyncio.sleep(0.05)
        first.stop()
        await first_task

    leaving = asyncio.create_task(leave_midway())
    await run_until(second, lambda p: leaving.done() and all_handled(0)(p)
                    and p.stats.produced + first.stats.produced >= n, limit_s=120)  # fmt: skip
    await leaving
    assert second.stats.consumed > 0
    assert first.stats.consumed > 0

    got = consume(kafka.bootstrap_servers, out, None, timeout=60)
    sources = {source_of(r) for r in got}
    assert len(sources) == n, f"{n - len(sources)} events missing"
    ends = collections.Counter(p for _, p, _ in sources)
    assert committed(kafka, src, 4) == [ends[p] for p in range(4)]


async def test_exactly_once_outputs_are_committed_once(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """In exactly-once mode a read_committed reader sees every output exactly once."""
    src, out, dlq = make_topic("in", 3), make_topic("out", 3), make_topic("dlq")
    records = events(500)
    records[100] = (b"k", b"broken")
    produce(kafka.bootstrap_servers, src, records)
    settings = settings_for(
        kafka,
        [route("r", src, out)],
        dlq={"topic": dlq},
        processing={"guarantee": "exactly-once", "transactional_id": f"t-{uuid.uuid4().hex}"},
    )
    processor = Processor(settings)
    await run_until(processor, all_handled(500))
    got = consume(kafka.bootstrap_servers, out, 499, isolation="read_committed")
    dead = consume(kafka.bootstrap_servers, dlq, 1, isolation="read_committed")
    sources = [source_of(r) for r in got] + [source_of(r) for r in dead]
    assert len(sources) == len(set(sources)) == 500
    assert processor.stats.transactions > 0


class Misconfigured(Handler):
    """Fails every event the way a revoked API key would."""

    name = "misconfigured"

    async def handle(self, record: SourceRecord) -> Result:
        raise ModelRequestRejected("calling the model: HTTP 401: invalid API key")


async def test_fatal_error_stops_without_dead_lettering(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """A fatal error (bad key) stops the processor; nothing is dead-lettered or
    committed, so every event is processed once the cause is fixed."""
    src, out, dlq = make_topic("in"), make_topic("out"), make_topic("dlq")
    produce(kafka.bootstrap_servers, src, events(20))
    settings = settings_for(kafka, [route("r", src, out)], dlq={"topic": dlq})
    processor = Processor(settings, {"r": Misconfigured(EchoOptions())})
    with pytest.raises(ModelRequestRejected, match="invalid API key"):
        await run_until(processor, lambda p: False, limit_s=60)
    assert processor.stats.dead_lettered == 0
    assert committed(kafka, src, 1)[0] <= 0  # at most the start position, nothing past it
    assert consume(kafka.bootstrap_servers, dlq, None, timeout=5, idle_s=1) == []


async def test_pause_while_holds_back_consumption(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """While a pause condition holds (the model's breaker is open), every partition is
    paused and consumption stops, the member stays in the group; it resumes after."""
    src, out = make_topic("in", 2), make_topic("out", 2)
    produce(kafka.bootstrap_servers, src, events(400))
    blocked = True
    settings = settings_for(kafka, [route("r", src, out)], processing={"max_poll_records": 20})
    processor = Processor(settings, pause_while=[lambda: blocked])
    task = asyncio.create_task(processor.run())
    await asyncio.wait_for(processor.assigned.wait(), 30)
    await asyncio.sleep(2)
    held = processor.stats.consumed
    assert held <= 2 * 20, "only what the first poll fetched before the pause"
    assert all(part.paused for part in processor.partitions.values())
    await asyncio.sleep(1)
    assert processor.stats.consumed == held
    blocked = False
    while not all_handled(400)(processor):
        assert not task.done()
        await asyncio.sleep(0.05)
    processor.stop()
    await task
    assert processor.stats.resumes >= 2


async def test_dead_letters_near_the_cap_raise_one_alert(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """At 80 % of the DLQ cap the processor publishes one typed ``dlq.cap_approaching``
    alert with a dedup key, not one per dead letter, and goes on while under the cap."""
    src, out, dlq, alerts = (make_topic(p) for p in ("in", "out", "dlq", "alerts"))
    records = [(b"bad", b"garbage %d" % i) for i in range(9)] + events(30)
    produce(kafka.bootstrap_servers, src, records)
    dead = {"topic": dlq, "max_consecutive": 10}
    settings = settings_for(kafka, [route("r", src, out)], dlq=dead, alerts={"topic": alerts})
    processor = Processor(settings)
    await run_until(processor, all_handled(39))

    raised = consume(kafka.bootstrap_servers, alerts, None, idle_s=2)
    assert len(raised) == 1  # the 8th, 9th dead letter: near the cap, one alert
    alert = Alert.model_validate_json(raised[0].value or b"")
    assert alert.kind == "dlq.cap_approaching"
    assert alert.dedup_key == f"dlq-cap:{kafka.group_id}:{dlq}"
    assert alert.source == f"{src}[0]@7"
    assert alert.details["consecutive"] == 8
    assert alert.details["max_consecutive"] == 10
    assert processor.alerts_raised == {("r", "dlq.cap_approaching"): 1}
    assert len(consume(kafka.bootstrap_servers, out, 30)) == 30
    assert len(consume(kafka.bootstrap_servers, dlq, 9)) == 9


class Grumbler(Handler):
    """Logs while handling each event and fails on odd ids."""

    name = "grumbler"

    async def handle(self, record: SourceRecord) -> Result:
        await asyncio.sleep(0)
        body = orjson.loads(record.value or b"")
        logging.getLogger("handlers.grumbler").info("looking at id %d", body["id"])
        if body["id"] % 2:
            raise ValueError(f"odd id {body['id']}")
        return Result(record.value)


async def test_json_logs_say_which_event(kafka: KafkaSettings, make_topic: TopicFactory) -> None:
    """Every line logged while an event is handled, by the runtime or by the handler,
    carries the route, topic, partition and offset of that event."""
    src, out, dlq = make_topic("in", 2), make_topic("out", 2), make_topic("dlq")
    produce(kafka.bootstrap_servers, src, [*events(12), (b"bad", b"not json")])
    settings = settings_for(kafka, [route("r", src, out, "unordered")], dlq={"topic": dlq})
    lines = io.StringIO()
    handler = make_handler(LogSettings(format="json"), lines)
    root = logging.getLogger()
    root.addHandler(handler)
    level, root.level = root.level, logging.INFO
    try:
        await run_until(Processor(settings, {"r": Grumbler(EchoOptions())}), all_handled(13))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    entries = [orjson.loads(line) for line in lines.getvalue().splitlines()]
    by_message: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for entry in entries:
        by_message[str(entry["msg"]).split(" ")[0]].append(entry)
    assert len(by_message["looking"]) == 12  # the handler's own lines
    assert len(by_message["dead-lettering"]) == 7  # six odd ids and the bad one
    offsets = {(p, o) for p in (0, 1) for o in range(13)}
    for entry in by_message["looking"] + by_message["dead-lettering"] + by_message["handler"]:
        assert entry["route"] == "r"
        assert entry["topic"] == src
        assert (entry["partition"], entry["offset"]) in offsets
        assert f"{src}[{entry['partition']}]@{entry['offset']}" in str(entry["msg"]) or (
            entry["logger"] == "handlers.grumbler"
        )


async def test_a_bad_event_near_the_size_limit_reaches_the_dlq_whole(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """A 900 KB event that fails would make a 1.2 MB envelope, over the producer's 1 MB
    limit: it reaches the DLQ in the raw form, bytes exact, and `dlq inspect` reads it
    back like any envelope."""
    src, out, dlq = make_topic("in"), make_topic("out"), make_topic("dlq")
    big = b"\xff" + b"not json " * 100_000
    produce(kafka.bootstrap_servers, src, [(b"k1", b'{"id": 1}'), (b"big", big), (b"k2", b"{}")])
    processor = Processor(settings_for(kafka, [route("r", src, out)], dlq={"topic": dlq}))
    await run_until(processor, all_handled(3))

    (dead,) = consume(kafka.bootstrap_servers, dlq, 1)
    assert is_raw(dead.headers)
    assert dead.value == big
    stats = ReadStats(dlq)
    with closing(read_envelopes(kafka, stats, 10)) as envelopes:
        (envelope,) = list(envelopes)
    assert envelope.value == big
    assert envelope.key == b"big"
    assert envelope.source_offset == 1
    assert envelope.error_class == "BadInput"
    assert stats.unparsable == 0
    assert len(consume(kafka.bootstrap_servers, out, 2)) == 2


async def test_outputs_the_broker_refuses_are_dead_lettered_on_the_fast_path(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """The output topic takes records of at most 2,000 bytes: the broker refuses the
    outputs of the larger events after they were queued (a failed delivery report, not
    a refusal at produce time). Those events go to the DLQ with stage "produce"; the
    others in the same polled runs are delivered and committed.

    One record per request and no compression, so that the broker judges each output
    alone: it refuses a whole batch that is too large, neighbours included, which is
    why the producer's message.max.bytes must not exceed the topics' limit (README)."""
    src, dlq = make_topic("in", 2), make_topic("dlq")
    out = f"out-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    topic = NewTopic(out, num_partitions=2, config={"max.message.bytes": "2000"})
    admin.create_topics([topic])[out].result(30)
    records = [
        (b"k%d" % i, orjson.dumps({"id": i, "pad": "x" * (3000 if i % 10 == 3 else 10)}))
        for i in range(200)
    ]
    produce(kafka.bootstrap_servers, src, records)
    alone = {"batch.num.messages": 1, "compression.type": "none", "linger.ms": 0}
    kafka = kafka.model_copy(update={"producer_extra": alone})
    settings = settings_for(kafka, [route("r", src, out, "unordered")], dlq={"topic": dlq})
    processor = Processor(settings)
    try:
        await run_until(processor, all_handled(200))
        dead = consume(kafka.bootstrap_servers, dlq, 20)
        delivered = consume(kafka.bootstrap_servers, out, 180)
    finally:
        admin.delete_topics([out])
    assert sorted(DlqEnvelope.from_json(r.value or b"").value or b"" for r in dead) == sorted(
        v for i, (_, v) in enumerate(records) if i % 10 == 3
    )
    assert {header(r.headers, DLQ_STAGE) for r in dead} == {b"produce"}
    assert len({source_of(r) for r in delivered}) == 180
    assert sum(committed(kafka, src, 2)) == 200
