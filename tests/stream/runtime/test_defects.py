"""Regression tests of runtime defects found from outside: each failed before its fix."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import orjson
import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from handlers.base import Handler, HandlerOptions, Result
from handlers.echo import EchoHandler, EchoOptions
from schemas.records import OutRecord, SourceRecord
from stream.config import KafkaSettings, RouteSettings
from stream.dlq import dead_letter, from_raw, is_raw, shrink
from stream.errors import OutputUnavailable, ProduceFailed, TransactionAborted
from stream.kafka.admin import record_limit_problems
from stream.kafka.errors import map_kafka_error
from stream.kafka.headers import DLQ_FORMAT, header
from stream.kafka.source import consumer_config
from stream.runtime.atleastonce import AtLeastOnce
from stream.runtime.partition import Partition, Route
from stream.runtime.processor import Processor
from stream.runtime.watchdog import Watchdog
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce
from tests.stream.harness import run_until, settings_for, source_of


def partition(ordering: str = "unordered") -> Partition:
    route = RouteSettings(name="r", input_topics=["in"], output_topic="out", ordering=ordering)
    return Partition(("in", 0), Route(route, EchoHandler(EchoOptions())))


# --- pure: error codes, commits, the watchdog, dead letters ------------------------------


@pytest.mark.parametrize(
    "code",
    [RdKafkaError._MSG_TIMED_OUT, RdKafkaError.NOT_ENOUGH_REPLICAS,
     RdKafkaError.NOT_LEADER_FOR_PARTITION, RdKafkaError.REQUEST_TIMED_OUT],
)  # fmt: skip
def test_delivery_timeouts_and_leader_changes_are_retriable(code: int) -> None:
    """librdkafka's delivery reports say retriable() == False for these; they are outages,
    never dead-lettered."""
    error = map_kafka_error(RdKafkaError(code), "delivering")
    assert error.retriable


def test_a_missing_topic_is_a_configuration_fault_and_a_huge_record_too_large() -> None:
    missing = map_kafka_error(RdKafkaError(RdKafkaError.UNKNOWN_TOPIC_OR_PART), "delivering")
    large = map_kafka_error(RdKafkaError(RdKafkaError.MSG_SIZE_TOO_LARGE), "delivering")
    assert isinstance(missing, ProduceFailed)
    assert missing.config
    assert not missing.retriable
    assert isinstance(large, ProduceFailed)
    assert large.too_large
    assert not large.config


def test_a_failed_async_commit_is_sent_again() -> None:
    """An offset counts as committed only when the broker confirms it."""
    part = partition()
    part.offsets.started_many([0, 1, 2])
    part.done_many([0, 1, 2])
    core = cast(Any, SimpleNamespace(parts={part.tp: part}))
    strategy = AtLeastOnce.__new__(AtLeastOnce)
    strategy.core = core
    assert part.new_committable() == 3
    part.commit_sent = 3
    assert part.new_committable() is None  # asked for, not answered yet
    strategy.on_commit([(part.tp, 3, "REQUEST_TIMED_OUT")])
    assert part.new_committable() == 3  # failed: the next commit sends it again
    part.commit_sent = 3
    strategy.on_commit([(part.tp, 3, None)])
    assert part.committed == 3
    assert part.new_committable() is None
    assert part.unconfirmed() is None


def test_a_replacement_takes_over_a_dead_member_within_seconds() -> None:
    """librdkafka's default session timeout (45 s) kept a killed member's partitions."""
    conf = consumer_config(KafkaSettings())
    assert int(conf["session.timeout.ms"]) <= 10000
    assert int(conf["heartbeat.interval.ms"]) * 3 <= int(conf["session.timeout.ms"])


def test_the_watchdog_names_a_stuck_partition_and_not_an_idle_one() -> None:
    stuck, idle = partition(), partition()
    stuck.offsets.started_many([7, 8])
    stuck.progressed_at -= 300
    idle.progressed_at -= 300
    dog = Watchdog(stall_timeout_s=120)
    dog.check([stuck, idle])
    assert list(dog.stalls) == [stuck.tp]
    assert "7" in str(dog.stalls[stuck.tp])
    stuck.done_many([7, 8])
    dog.check([stuck, idle])
    assert dog.stalls == {}


def test_a_value_larger_than_the_producer_takes_is_dead_lettered_truncated() -> None:
    """A 2 MB value the input topic accepted fits no DLQ record whole: it goes truncated,
    its length in a header, instead of being refused and stopping the process."""
    record = SourceRecord("in", 0, 5, b"k", b"x" * 2_000_000, (("h", b"v"),))
    out = dead_letter(record, ValueError("too big"), topic="dlq", route="r", handler="echo",
                      max_bytes=1_000_000)  # fmt: skip
    assert header(out.headers, DLQ_FORMAT) == b"truncated"
    assert len(out.value) < 1_000_000
    envelope = from_raw(out.key, out.value, out.headers)
    assert envelope.value_bytes == 2_000_000
    assert envelope.headers == [("h", b"v")]
    smaller = shrink(out)
    assert smaller is not None
    assert len(smaller.value) <= 64 * 1024
    assert is_raw(smaller.headers)


# --- against the broker --------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_a_poison_value_over_the_producer_limit_blocks_nothing(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """A 2 MB value on an input topic that takes 3 MB: dead-lettered (truncated), its
    neighbours enriched, the processor keeps going (it used to exit 1 on every start)."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    src = f"big-{time.monotonic_ns()}"
    topic = NewTopic(src, num_partitions=1, config={"max.message.bytes": str(3_000_000)})
    for future in admin.create_topics([topic]).values():
        future.result(30)
    out, dlq = make_topic("out"), make_topic("dlq")
    big = Producer({"bootstrap.servers": kafka.bootstrap_servers, "message.max.bytes": 3_100_000})
    for i in range(60):
        value = b"x" * 2_000_000 if i == 30 else orjson.dumps({"id": i})
        big.produce(src, value, f"k{i}".encode())
    assert big.flush(30) == 0
    route = {"name": "r", "input_topics": [src], "output_topic": out, "ordering": "partition"}
    processor = Processor(settings_for(kafka, [route], dlq={"topic": dlq}))
    try:
        await run_until(processor, lambda p: p.stats.produced >= 60, limit_s=60)
    finally:
        admin.delete_topics([src])
    enriched = consume(kafka.bootstrap_servers, out, 59)
    dead = consume(kafka.bootstrap_servers, dlq, 1)
    assert {source_of(r)[2] for r in enriched} == set(range(60)) - {30}
    assert header(dead[0].headers, DLQ_FORMAT) == b"truncated"


class Never(Handler):
    """An awaited handler that never answers (a model that hangs)."""

    name = "never"

    def __init__(self) -> None:
        super().__init__(HandlerOptions())

    async def handle(self, record: SourceRecord) -> Result:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_shutdown_takes_one_timeout_not_two(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """Events that never finish: the shutdown drains once until its deadline, and the
    revoke inside consumer.close() shares that deadline (it used to drain again)."""
    src, out = make_topic("in"), make_topic("out")
    produce(kafka.bootstrap_servers, src, [(None, orjson.dumps({"id": i})) for i in range(20)])
    route = {"name": "r", "input_topics": [src], "output_topic": out, "ordering": "unordered"}
    settings = settings_for(kafka, [route], processing={"shutdown_timeout_s": 4})
    processor = Processor(settings, {"r": Never()})
    task = asyncio.create_task(processor.run())
    while processor.stats.consumed < 20:  # noqa: ASYNC110 - polls counters
        await asyncio.sleep(0.05)
    started = time.monotonic()
    processor.stop()
    await task
    took = time.monotonic() - started
    # One deadline (4 s) plus closing the clients; two deadlines would be 8 s and more.
    assert took < 7.5, f"shutdown took {took:.1f}s"


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_a_partition_paused_revoked_and_assigned_back_resumes(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """librdkafka keeps the pause flag across revoke and re-assign: a partition paused
    when a second member took it, and given back when that member left, must move again
    (it made no progress for good before)."""
    src, out = make_topic("in", 4), make_topic("out", 4)
    produce(kafka.bootstrap_servers, src, [(f"k{i}".encode(), orjson.dumps({"id": i}))
                                           for i in range(400)])  # fmt: skip
    route = {"name": "r", "input_topics": [src], "output_topic": out, "ordering": "unordered"}
    held = [True]
    settings = settings_for(kafka, [route])
    first = Processor(settings, pause_while=[lambda: held[0]])
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.assigned.wait(), 30)
    while not (first.partitions and all(p.paused for p in first.partitions.values())):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    second = Processor(settings, pause_while=[lambda: True])  # joins, takes some, leaves
    second_task = asyncio.create_task(second.run())
    while len(first.partitions) == 4:  # noqa: ASYNC110 - waits for the rebalance
        await asyncio.sleep(0.05)
    second.stop()
    await second_task
    while len(first.partitions) < 4:  # noqa: ASYNC110 - waits for them to come back
        await asyncio.sleep(0.05)
    held[0] = False
    deadline = time.monotonic() + 30
    while first.stats.produced < 400 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    first.stop()
    await first_task
    got = {source_of(r) for r in consume(kafka.bootstrap_servers, out, 400)}
    assert len(got) == 400


def test_record_limits_that_would_truncate_dead_letters_name_the_settings() -> None:
    """An input topic that takes more than the producer or the DLQ topic: say which
    setting to raise, to how much."""
    problems = record_limit_problems({"big": 3_000_000, "small": 1_000_000}, {"out": 1_048_588},
                                     ("dlq", 1_048_588), 1_000_000)  # fmt: skip
    text = " ".join(problems)
    assert "'big' accepts records up to 3000000" in text
    assert 'kafka.producer_extra."message.max.bytes" to at least 3004096' in text
    assert "DLQ topic 'dlq'" in text
    assert "output topic(s) out" in text
    assert record_limit_problems({"in": 900_000}, {"out": 2_000_000}, ("dlq", 2_000_000),
                                 2_000_000) == []  # fmt: skip


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_an_output_topic_that_cannot_be_written_stops_instead_of_dead_lettering(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """Every output refused because the topic may not be written (Kafka's own internal
    topic; a missing topic on a broker that does not create topics fails the same way):
    the processor stops naming the topic and dead-letters nothing (it used to drain the
    input into the DLQ)."""
    src, dlq = make_topic("in"), make_topic("dlq")
    produce(kafka.bootstrap_servers, src, [(None, orjson.dumps({"id": i})) for i in range(50)])
    route = {"name": "r", "input_topics": [src], "output_topic": "__transaction_state",
             "ordering": "unordered"}  # fmt: skip
    processor = Processor(settings_for(kafka, [route], dlq={"topic": dlq}))
    with pytest.raises(OutputUnavailable, match="__transaction_state"):
        await run_until(processor, lambda p: False, limit_s=60)
    assert processor.stats.dead_lettered == 0
    assert consume(kafka.bootstrap_servers, dlq, None, timeout=5, idle_s=2) == []


def test_a_closing_partition_starts_none_of_its_queued_events() -> None:
    """During a revoke the consumer is blocked in the callback for every partition: the
    events queued in ordered lanes stay queued (uncommitted, the new owner reads them)
    instead of being started one after the other until the deadline."""
    route = {"name": "r", "input_topics": ["in"], "output_topic": "out", "ordering": "partition"}
    processor = Processor(settings_for(KafkaSettings(), [route]))
    part = Partition(("in", 0), processor.routes()[0])
    processor.parts[part.tp] = part
    records = [SourceRecord("in", 0, i, None, orjson.dumps({"id": i})) for i in range(3)]
    part.offsets.started_many([0, 1, 2])
    assert [part.lanes.admit(r) for r in records] == [True, False, False]
    part.closing = True
    processor.advance(part, records[0])
    assert part.lanes.waiting == 2
    assert part.running == 1  # only the first: nothing else was started


class FlakySink:
    """A transactional sink whose first commit aborts; it records what each commit took."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[OutRecord], dict[tuple[str, int], int]]] = []
        self.aborted = 0

    async def commit_transaction(
        self, records: list[OutRecord], offsets: dict[tuple[str, int], int], _meta: object
    ) -> None:
        await asyncio.sleep(0.05)
        if not self.aborted:
            self.aborted += 1
            raise TransactionAborted("the broker aborted it")
        self.commits.append((list(records), dict(offsets)))

    async def abort(self) -> None:
        return None


@pytest.mark.asyncio
async def test_exactly_once_never_commits_a_lost_partitions_offsets_without_its_outputs() -> None:
    """A partition lost while a commit is retried: the retry either carries its outputs
    with its offsets or neither (it used to keep the offsets and drop the outputs)."""
    route = {"name": "r", "input_topics": ["in"], "output_topic": "out"}
    settings = settings_for(KafkaSettings(), [route], processing={"guarantee": "exactly-once"})
    processor = Processor(settings)
    sink = FlakySink()
    guarantee = cast(Any, processor._guarantee)
    guarantee.sink = sink
    processor.group_metadata = lambda: None  # type: ignore[method-assign]
    for p in (0, 1):
        part = Partition(("in", p), processor.routes()[0])
        processor.parts[part.tp] = part
        part.offsets.started(0)
        guarantee.settle(part, SourceRecord("in", p, 0, None, b"{}"),
                         [OutRecord("out", None, b"from %d" % p)])  # fmt: skip
    commit = asyncio.create_task(guarantee._commit())
    await asyncio.sleep(0.01)  # the first attempt is under way
    await processor._on_lost([("in", 1)])
    await commit
    for records, offsets in sink.commits:
        carried = {int(r.value.split()[-1]) for r in records}
        assert {p for _, p in offsets} <= carried, (records, offsets)
