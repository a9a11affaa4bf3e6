"""At-least-once: an event is done when every output of it is acknowledged by Kafka.

Outputs are produced at once; a ``Delivery`` counts their reports and, on the loop,
finishes the event or decides what a failure means (by error code, see
stream/kafka/errors.py): an outage is sent again with backoff and never dead-lettered; a
missing or unwritable topic stops the processor naming it; an output too large, or
refused for itself, is dead-lettered (counted by the DLQ cap); a dead letter too large
for the DLQ is shrunk until it fits. Offsets are committed asynchronously and count as
committed only once the broker confirms them, so a failed commit is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterator
from functools import partial
from time import perf_counter
from typing import Any

from confluent_kafka import KafkaException, Message

from schemas.records import OutRecord, SourceRecord
from stream.dlq import shrink
from stream.errors import KafkaError, OutputUnavailable, ProduceFailed
from stream.kafka.headers import with_offset
from stream.kafka.sink import Sink
from stream.runtime.delivery import Delivery, Failure
from stream.runtime.guarantee import Answer, Core
from stream.runtime.partition import TP, Partition
from stream.telemetry.stats import backoff

log = logging.getLogger("stream.runtime")


class AtLeastOnce:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.sink = Sink(core.settings.kafka)
        self._dlq_topic = core.settings.dlq.topic
        self._last_commit = time.monotonic()

    # --- outputs -------------------------------------------------------------------------

    def settle(self, part: Partition, record: SourceRecord, outputs: list[OutRecord]) -> None:
        self._send(part, record, outputs, attempt=0)

    def _send(
        self, part: Partition, record: SourceRecord, outputs: list[OutRecord], *, attempt: int
    ) -> None:
        """Queue ``outputs``; the event is done when all are acknowledged. The first send
        (``attempt`` 0) lets the next event of the lane start once they are queued."""
        if not outputs:
            self.core.finished(part, [record.offset])
            if attempt == 0:
                self.core.advance(part, record)
            return
        queued = perf_counter()
        delivery = Delivery(
            self.sink.ready,
            lambda failures: self._delivered(
                part, record, outputs, failures, queued=queued, attempt=attempt
            ),
            len(outputs),
        )
        for i, out in enumerate(outputs):
            try:
                self.sink.send_nowait(out, partial(delivery.report, index=i))
            except BufferError:  # librdkafka's queue is full: wait for room in a task
                rest = self._send_rest(part, record, outputs, i, delivery, attempt=attempt)
                self.core.spawn(part, rest)
                return
            except KafkaError as exc:  # refused before queueing, e.g. too large
                delivery.refused(exc, unsent=len(outputs) - i)
                self.sink.wake()
                break
        if attempt == 0:
            self.core.advance(part, record)

    async def _send_rest(
        self,
        part: Partition,
        record: SourceRecord,
        outputs: list[OutRecord],
        start: int,
        delivery: Delivery,
        *,
        attempt: int,
    ) -> None:
        for i in range(start, len(outputs)):
            try:
                await self.sink.send(outputs[i], partial(delivery.report, index=i))
            except KafkaError as exc:
                delivery.refused(exc, unsent=len(outputs) - i)
                self.sink.wake()
                break
        if attempt == 0:
            self.core.advance(part, record)

    def _delivered(
        self,
        part: Partition,
        record: SourceRecord,
        outputs: list[OutRecord],
        failures: list[Failure],
        *,
        queued: float | None,
        attempt: int,
    ) -> None:
        """Every output of ``record`` reported: finish it, or decide what the failure means.
        Never drop an output."""
        if not failures:
            part.route.counts.produced += len(outputs)
            if queued is not None:
                self.core.stages["produce"].observe(perf_counter() - queued)
            self.core.finished(part, [record.offset])
            return
        if part.gone:
            return
        failed = {index for index, _, _ in failures}
        retry = outputs if -1 in failed else [outputs[i] for i in sorted(failed)]
        part.route.counts.produced += len(outputs) - len(retry)
        error = failures[0][1]
        if isinstance(error, ProduceFailed) and error.config:
            topics = sorted({out.topic for out in retry})
            self.core.fail(OutputUnavailable(
                f"{error}: topic {', '.join(topics)} of route {part.route.name!r} does not "
                "exist or may not be written by this client; create it (or grant WRITE) "
                "and start again. Its events are left uncommitted, none was dead-lettered",
                error.code,
            ))  # fmt: skip
            return
        if error.retriable:
            log.warning("delivering %s failed, sending again: %s", record.where, error)
        elif all(out.topic == self._dlq_topic for out in retry):
            smaller = [shrink(out) for out in retry]
            if any(s is None for s in smaller):
                self.core.fail(error)  # not even the smallest dead letter fits: stop
                return
            retry = [s for s in smaller if s is not None]
        else:
            dead = self.core.dead_letters
            if not dead.counted(True):
                return
            part.route.counts.dead_lettered += 1
            retry = [dead.record(part.route, record, error, attempt + 1, "produce")]
        self.core.stats.retries += 1
        self.core.spawn(part, self._send_later(part, record, retry, attempt + 1))

    async def _send_later(
        self, part: Partition, record: SourceRecord, outputs: list[OutRecord], attempt: int
    ) -> None:
        await asyncio.sleep(backoff(min(attempt, 8)))
        self._send(part, record, outputs, attempt=attempt)

    def settle_run(self, part: Partition, answers: Iterator[Answer]) -> None:
        """Queue the outputs under one ``Delivery``; the events are done when it is."""
        topic = part.route.settings.output_topic
        sent: list[SourceRecord] = []  # the records whose output ``delivery`` covers
        values: list[bytes] = []  # and their outputs' values
        queued = perf_counter()
        delivery = Delivery(
            self.sink.ready,
            lambda failures: self._delivered_run(part, sent, values, failures, queued),
        )
        report = delivery.report  # unbound: a failed report is told apart by key and value
        produce = self.sink.producer.produce  # the raw call: Sink.produce's wrapper costs
        advance = self.core.advance
        for record, value, headers in answers:
            try:
                produce(topic, value, record.key, on_delivery=report, headers=headers)  # type: ignore[arg-type] # see Sink
            except (BufferError, KafkaException):  # the general path waits, or reports
                self._send(part, record, [OutRecord(topic, record.key, value, tuple(headers))],
                           attempt=0)  # fmt: skip
                continue
            sent.append(record)
            values.append(value)
            advance(part, record)
        if sent:
            delivery.seal(len(sent))

    def _delivered_run(
        self,
        part: Partition,
        sent: list[SourceRecord],
        values: list[bytes],
        failures: list[Failure],
        queued: float,
    ) -> None:
        """The fast path's outputs of one run reported: their offsets are done, but for
        the failed ones, which go on one by one like any failed delivery."""
        if part.gone:
            return
        failed = failed_in_run(sent, values, failures) if failures else {}
        done = [r.offset for i, r in enumerate(sent) if i not in failed]
        self.core.finished(part, done)
        part.route.counts.produced += len(done)
        if done:
            self.core.stages["produce"].observe_many(perf_counter() - queued, len(done))
        topic = part.route.settings.output_topic
        for index, (error, msg) in failed.items():
            record = sent[index]
            headers = record.headers + with_offset(part.trace, record)
            output = OutRecord(topic, record.key, values[index], headers)
            self._delivered(part, record, [output], [(0, error, msg)], queued=None, attempt=0)

    # --- the loop's cadence --------------------------------------------------------------

    def poll_wait(self, default_s: float) -> float:
        return default_s

    def room_coming(self) -> Coroutine[Any, Any, object] | None:
        """Acknowledgements are on their way while librdkafka holds queued outputs."""
        if len(self.sink.producer) == 0:
            return None
        self.core.room.clear()
        return self.core.room.wait()

    async def after_poll(self, polled: bool) -> None:
        interval = self.core.settings.processing.commit_interval_ms / 1000
        if time.monotonic() - self._last_commit >= interval:
            self._last_commit = time.monotonic()
            self._commit_async()

    def _commit_async(self) -> None:
        offsets: dict[TP, int] = {}
        for part in self.core.parts.values():
            offset = part.new_committable()
            if offset is not None:
                offsets[part.tp] = offset
                part.commit_sent = offset
        if offsets:
            self.core.stats.commits += 1
            self.core.commit_offsets(offsets)

    def on_commit(self, results: list[tuple[TP, int, str | None]]) -> None:
        """Confirmed offsets count as committed; a failed one is sent again next time."""
        for tp, offset, error in results:
            part = self.core.parts.get(tp)
            if part is None:
                continue
            if error is None:
                if part.committed is None or offset > part.committed:
                    part.committed = offset
                if part.commit_sent is not None and part.commit_sent <= offset:
                    part.commit_sent = None
            elif part.commit_sent == offset:
                part.commit_sent = None  # the next commit sends it again
                log.warning("committing %s[%d]@%d failed, will retry: %s", *tp, offset, error)

    async def release(self, parts: list[Partition]) -> dict[TP, int]:
        offsets = {p.tp: o for p in parts if (o := p.unconfirmed()) is not None}
        if offsets:
            self.core.stats.commits += 1
        return offsets

    async def lost(self, parts: list[Partition], forget: Any) -> None:
        forget(parts)

    async def close(self) -> None:
        return None


def failed_in_run(
    sent: list[SourceRecord], values: list[bytes], failures: list[Failure]
) -> dict[int, tuple[KafkaError, Message | None]]:
    """Which outputs of a run the failed reports belong to, by index in ``sent``: each
    report is matched by the output's key and value. Outputs alike in both (the same
    event twice) cannot be told apart, so all of them count as failed and are sent
    again: at worst a duplicate, never a loss."""
    by_content: dict[tuple[bytes | None, bytes], list[int]] = {}
    for i, (record, value) in enumerate(zip(sent, values, strict=True)):
        by_content.setdefault((record.key, value), []).append(i)
    failed: dict[int, tuple[KafkaError, Message | None]] = {}
    for index, error, msg in failures:
        if index >= 0:
            matches = [index]
        elif msg is None:  # refused before it was queued: which one is unknown
            matches = list(range(len(sent)))
        else:
            matches = by_content.get((msg.key(), msg.value() or b""), list(range(len(sent))))
        for i in matches:
            failed.setdefault(i, (error, msg))  # the first failure of each output
    return failed
