"""The fast path: a polled run of one partition's records through a handler that answers
at once, handled in one go. The common case (one output, to the route's topic) is
yielded for the guarantee to settle in bulk; every other event goes down the general
path one at a time. No call per event that the loop can do without: at tens of
thousands of events a second, a function call is a visible share of the cost."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from time import perf_counter

from confluent_kafka import Message

from handlers.base import Result
from schemas.records import SourceRecord, make
from stream.kafka.headers import SOURCE_OFFSET, header_tuples
from stream.runtime.deadletters import DeadLetters
from stream.runtime.guarantee import Answer
from stream.runtime.partition import Partition
from stream.telemetry.histogram import Histogram

log = logging.getLogger("stream.runtime")


def without_redeliveries(
    part: Partition, run: list[Message], offsets: list[int]
) -> tuple[list[Message], list[int]]:
    """``run`` without the records at or below an offset already started.

    librdkafka may rewind a fetch position after pause/resume or a rebalance (e.g.
    librdkafka#4686); the first copy is still tracked, so the others are skipped.
    """
    top = part.offsets.highest
    kept: list[Message] = []
    kept_offsets: list[int] = []
    for msg, offset in zip(run, offsets, strict=True):
        if offset <= top:
            part.route.counts.redelivered += 1
            log.debug("skipping redelivered %s[%d]@%d", *part.tp, offset)
            continue
        top = offset
        kept.append(msg)
        kept_offsets.append(offset)
    return kept, kept_offsets


def instant(
    part: Partition,
    run: list[Message],
    offsets: list[int],
    *,
    answered_later: Callable[[Partition, SourceRecord, Result | None, Exception | None], bool],
    dead_letters: DeadLetters,
    stages: Mapping[str, Histogram],
) -> Iterator[Answer]:
    """Run the handler's ``try_now`` on each record; yield (record, value, headers) of
    the output when it is the common case (one output, to the route's topic), and send
    every other event down the general path (``answered_later``). The guarantee advances
    the record's lane once the output is settled."""
    topic, partition = part.tp
    try_now = part.route.handler.try_now  # looked up once per run, not per record
    lanes = None if part.route.settings.ordering == "unordered" else part.lanes
    trace = part.trace
    started = perf_counter()
    answered = 0  # events answered here, for the handle stage
    passed = 0  # answered events not yet counted by the DLQ cap (counted in bulk)
    for msg, offset in zip(run, offsets, strict=True):
        # _source_record(), inlined: a call per event costs more than what it does.
        raw, (kind, ts) = msg.headers(), msg.timestamp()
        record = make(SourceRecord, (
            topic, partition, offset, msg.key(), msg.value(),
            header_tuples(raw) if raw else (), ts if kind else None,
        ))  # fmt: skip
        if lanes is not None and not lanes.admit(record):
            continue  # waits in its lane
        error: Exception | None = None
        try:
            result = try_now(record)
        except Exception as exc:  # noqa: BLE001 - _answered deals with it
            result, error = None, exc
        else:
            if result is not None and result.value is not None and not result.alerts:
                answered += 1
                passed += 1
                headers = [*record.headers, *trace, (SOURCE_OFFSET, b"%d" % offset)]
                yield record, result.value, headers
                continue
        if passed and not dead_letters.passed(passed):
            return
        passed = 0
        if not answered_later(part, record, result, error):  # may dead-letter
            answered += 1
    if passed:
        dead_letters.passed(passed)
    if answered:
        stages["handle"].observe_many((perf_counter() - started) / answered, answered)


def source_record(topic: str, partition: int, offset: int, msg: Message) -> SourceRecord:
    raw = msg.headers()
    kind, ts = msg.timestamp()
    return make(SourceRecord, (
        topic, partition, offset, msg.key(), msg.value(), header_tuples(raw) if raw else (),
        ts if kind else None,
    ))  # fmt: skip
