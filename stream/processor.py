"""The processor: consume -> handle -> produce -> commit, without losing an event.

One asyncio loop owns all state. An event's offset becomes committable only when every
output it produced is acknowledged (at-least-once) or staged for the next transaction
(exactly-once, where outputs and offsets are committed together). Bounds on in-flight
events pause partitions; polling never stops, so group membership stays alive.

Events whose handler answers at once take a fast path: a polled batch is handled one
run of consecutive records of a partition at a time, its offsets are started, finished
and acknowledged in bulk, and its outputs share one ``Delivery``. Everything else (an
awaited handler, a dead letter, an alert, a failed delivery) takes the general path, one
event at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from time import perf_counter
from typing import Any

from confluent_kafka import KafkaException, Message

from handlers.base import Handler, Result
from handlers.model import ModelPort
from schemas.enriched import Alert
from schemas.records import OutRecord, SourceRecord, make
from stream.config import Settings
from stream.delivery import Delivery, Failure
from stream.dlq import DEFAULT_MAX_RECORD_BYTES, DlqCap, dead_letter
from stream.errors import (
    ConfigError,
    EventError,
    KafkaError,
    ProducerFenced,
    SluicegateError,
    TransactionAborted,
)
from stream.histogram import Histogram
from stream.kafka.errors import map_kafka_error
from stream.kafka.headers import SOURCE_OFFSET, header_tuples, with_offset
from stream.kafka.sink import Sink
from stream.kafka.source import Source
from stream.logs import EVENT, event_fields
from stream.offsets import increasing
from stream.partition import TP, Partition, Route, output_records
from stream.routes import build_routes
from stream.stats import Stats, backoff

log = logging.getLogger(__name__)

POLL_S = 0.1  # how long a poll waits for records
QUIET_S = 0.01  # exactly-once, outputs staged: how long without records means quiet
# How long the loop may hold off polling while room in the in-flight bounds is on its way.
ROOM_WAIT_S = 1.0
# While dead letters stay near the DLQ cap, the alert about it is raised again at most
# this often (its dedup key makes the repeats one incident).
CAP_ALERT_EVERY_S = 300.0
STAGES = ("handle", "produce")


class Processor:
    """Runs every configured route until ``stop()`` or a fatal error."""

    def __init__(
        self,
        settings: Settings,
        handlers: Mapping[str, Handler] | None = None,
        *,
        pause_while: Sequence[Callable[[], bool]] = (),
        model: ModelPort | None = None,
    ) -> None:
        """``pause_while``: conditions under which consumption pauses as a whole (the model
        breaker is open, the budget policy says pause); polling goes on meanwhile."""
        if not settings.routes:
            raise ConfigError("routes: no route is configured; add at least one [[routes]]")
        self.settings = settings
        self.stats = Stats()
        self._routes = {
            t: r for r in build_routes(settings, handlers, model) for t in r.settings.input_topics
        }
        self.stats.routes = [route.counts for route in self.routes()]
        self._eos = settings.processing.guarantee == "exactly-once"
        self._source = Source(
            settings.kafka,
            self._routes,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._sink = self._new_sink()
        self._parts: dict[TP, Partition] = {}
        self._load = 0  # events held in memory across all partitions
        self._staged = 0  # exactly-once: events waiting for the next transaction
        self._unacked = 0  # fast path: events whose outputs are queued, not yet acknowledged
        self._room = asyncio.Event()  # set when acknowledgements release events
        self._cap = DlqCap(settings.dlq)
        # The largest record the producer sends: bigger DLQ envelopes go raw.
        extra = settings.kafka.producer_extra.get("message.max.bytes", DEFAULT_MAX_RECORD_BYTES)
        self._dlq_max_bytes = int(extra)
        self._cap_alerted_at = -CAP_ALERT_EVERY_S
        # Alerts the processor raised itself, by (route, kind); handlers count their own.
        self.alerts_raised: Counter[tuple[str, str]] = Counter()
        # Seconds per event in each stage: ``handle`` (the handler, model calls and
        # retries included) and ``produce`` (queued until acknowledged; exactly-once:
        # the transaction's commit).
        self.stages = {stage: Histogram() for stage in STAGES}
        self._spawned = 0  # events handed to a task of their own (awaited handlers)
        self._pause_while = tuple(pause_while)
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[Any] | None = None  # exactly-once: the running commit
        self._last_commit = time.monotonic()
        self.assigned = asyncio.Event()

    def _new_sink(self) -> Sink:
        if not self._eos:
            return Sink(self.settings.kafka)
        p = self.settings.processing
        tid = p.transactional_id or f"{self.settings.kafka.group_id}-{socket.gethostname()}"
        return Sink(
            self.settings.kafka,
            transactional_id=tid,
            transaction_timeout_ms=p.transaction_timeout_ms,
        )

    def stop(self) -> None:
        """Ask for a graceful stop: drain, commit, close. Safe from a signal handler."""
        self._stop.set()

    @property
    def partitions(self) -> Mapping[TP, Partition]:
        return self._parts

    @property
    def dlq_cap(self) -> DlqCap:
        return self._cap

    def routes(self) -> list[Route]:
        """The configured routes, each once."""
        return list({id(r): r for r in self._routes.values()}.values())

    def lag(self) -> dict[TP, int]:
        """Messages behind the high watermark, per assigned partition, counted from the
        events finished in order (see ``Source.lag``)."""
        finished = {tp: part.offsets.committable() for tp, part in self._parts.items()}
        return self._source.lag(finished)

    # --- the main loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Process until stopped; re-raise the fatal error that stopped it, if any."""
        p = self.settings.processing
        await self._sink.start()
        await self._source.start()
        try:
            while not self._stop.is_set():
                await self._wait_for_room()
                # Exactly-once outputs wait for the commit that an empty poll triggers:
                # poll briefly while some could commit, so they do not wait long once
                # the input stops.
                wait_s = QUIET_S if self._eos and self._commit_would_move() else POLL_S
                msgs = await self._source.poll(p.max_poll_records, wait_s)
                if msgs and not self._eos:
                    # The loop serves the delivery reports of what it queues itself, once
                    # the batch is out, instead of fighting the poller thread for the GIL.
                    self._sink.hold()
                    try:
                        self._receive(msgs)
                    finally:
                        self._sink.serve()
                elif msgs:
                    self._receive(msgs)
                    self._send_staged()
                self._backpressure()
                due = time.monotonic() - self._last_commit >= p.commit_interval_ms / 1000
                if not self._eos:
                    if due:
                        await self._commit()
                elif not self._committing and (
                    due or self._staged_enough() or (not msgs and self._commit_would_move())
                ):
                    # Exactly-once keeps outputs until the commit: commit before they fill
                    # the in-flight bounds rather than pausing until the timer, and when
                    # a poll comes back empty rather than keep them from readers for
                    # nothing. The transaction commits in the background while the loop
                    # consumes on.
                    self._committer = asyncio.create_task(self._commit())
                    self._committer.add_done_callback(self._committed)
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            log.error("stopping: %s", error)
        self._stop.set()

    async def _wait_for_room(self) -> None:
        """When the next poll could reach an in-flight bound and room is on its way (a
        running commit releases the staged events; acknowledgements, the events whose
        outputs are queued), wait for it a little before polling: a pause would cost
        more, since librdkafka drops what it prefetched for a paused partition."""
        more = self.settings.processing.max_poll_records
        deadline = time.monotonic() + ROOM_WAIT_S
        while (
            self._near_bounds(more)
            and not self._stop.is_set()
            and (left := deadline - time.monotonic()) > 0
        ):
            committer = self._committer
            if committer is not None and not committer.done():
                await asyncio.wait([committer], timeout=left)
            elif self._unacked:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), left)
            else:
                return

    def _near_bounds(self, more: int) -> bool:
        """True if ``more`` events would bring the events held in memory, in all or in
        one partition, to their bound."""
        p = self.settings.processing
        if self._load + more >= p.max_in_flight:
            return True
        per_partition = p.max_in_flight_per_partition - more
        return any(part.load >= per_partition for part in self._parts.values())

    def _staged_enough(self) -> bool:
        """Exactly-once: staged events fill half an in-flight bound; time to commit."""
        p = self.settings.processing
        if self._staged >= p.max_in_flight // 2:
            return True
        per_partition = p.max_in_flight_per_partition // 2
        return any(len(part.staged) >= per_partition for part in self._parts.values())

    def _commit_would_move(self) -> bool:
        """True if some partition has a committable offset not committed yet."""
        return any(part.new_committable() is not None for part in self._parts.values())

    @property
    def _committing(self) -> bool:
        return self._committer is not None and not self._committer.done()

    def _committed(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception() or RuntimeError("commit failed"))

    # --- receiving: one polled batch, a run of one partition's records at a time ---------

    def _receive(self, msgs: list[Message]) -> None:
        run: list[Message] = []
        topic, partition = "", -1
        for msg in msgs:
            if msg.error() is not None:
                self._consume_error(msg)
                continue
            t, p = msg.topic() or "", msg.partition() or 0
            if p != partition or t != topic:
                if run:
                    self._take(topic, partition, run)
                topic, partition, run = t, p, []
            run.append(msg)
        if run:
            self._take(topic, partition, run)

    def _consume_error(self, msg: Message) -> None:
        err = msg.error()
        if err is None:
            return
        mapped = map_kafka_error(err, "consuming")
        if err.fatal():
            self._fail(mapped)
        else:
            log.warning("consumer: %s", mapped)

    def _take(self, topic: str, partition: int, run: list[Message]) -> None:
        """Start consecutive records of one partition, in offset order."""
        part = self._parts.get((topic, partition))
        if part is None or self._fatal is not None:
            return  # fetched just before a revoke: the new owner reads it again
        offsets = [msg.offset() or 0 for msg in run]
        if offsets[0] <= part.offsets.highest or not increasing(offsets):
            run, offsets = self._without_redeliveries(part, run, offsets)
        part.offsets.started_many(offsets)
        self._load += len(run)
        part.route.counts.consumed += len(run)
        if not part.route.handler.answers_now:
            for msg, offset in zip(run, offsets, strict=True):
                record = _source_record(topic, partition, offset, msg)
                if part.lanes.admit(record):
                    self._answered(part, record, None, None)
        elif self._eos:
            self._stage_run(part, self._instant(part, run, offsets))
        else:
            self._send_run(part, self._instant(part, run, offsets))

    def _instant(
        self, part: Partition, run: list[Message], offsets: list[int]
    ) -> Iterator[tuple[SourceRecord, bytes, list[tuple[str, bytes]]]]:
        """The fast path: run the handler's ``try_now`` on each record; yield (record,
        value, headers) of the output when it is the common case (one output, to the
        route's topic), and send every other event down the general path. The caller
        advances the record's lane once the output is queued."""
        topic, partition = part.tp
        try_now = part.route.handler.try_now  # looked up once per run, not per record
        lanes = None if part.route.settings.ordering == "unordered" else part.lanes
        trace = part.trace
        started, spawned = perf_counter(), self._spawned
        answered = 0  # events try_now answered, for the handle stage
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
            answered += 1
            error: Exception | None = None
            try:
                result = try_now(record)
            except Exception as exc:  # noqa: BLE001 - _answered deals with it
                result, error = None, exc
            else:
                if result is not None and result.value is not None and not result.alerts:
                    passed += 1
                    headers = [*record.headers, *trace, (SOURCE_OFFSET, b"%d" % offset)]
                    yield record, result.value, headers
                    continue
            if passed and not self._cap_passed(passed):
                return
            passed = 0
            self._answered(part, record, result, error)  # may dead-letter: the cap counts
        if passed:
            self._cap_passed(passed)
        # The handler's time for the run, shared among the events it answered at once
        # (those it left to a task are timed there); includes queueing the outputs.
        answered -= self._spawned - spawned
        if answered > 0:
            self.stages["handle"].observe_many((perf_counter() - started) / answered, answered)

    def _cap_passed(self, events: int) -> bool:
        """Count ``events`` good events towards the DLQ cap; False if it stopped us."""
        try:
            self._cap.passed(events)
        except SluicegateError as exc:  # the DLQ cap: stop, leave the rest uncommitted
            self._fail(exc)
            return False
        return True

    def _stage_run(
        self,
        part: Partition,
        answers: Iterator[tuple[SourceRecord, bytes, list[tuple[str, bytes]]]],
    ) -> None:
        """Exactly-once: stage the outputs for the next transaction; the events are done."""
        topic, finished = part.route.settings.output_topic, []
        ordered = part.route.settings.ordering != "unordered"
        for record, value, headers in answers:
            part.stage(record.offset, [OutRecord(topic, record.key, value, tuple(headers))])
            finished.append(record.offset)
            if ordered:
                self._advance(part, record)
        part.offsets.done_many(finished)
        self._staged += len(finished)

    def _send_run(
        self,
        part: Partition,
        answers: Iterator[tuple[SourceRecord, bytes, list[tuple[str, bytes]]]],
    ) -> None:
        """At-least-once: queue the outputs under one ``Delivery``; the events are done
        when it is (see ``_delivered_run``)."""
        topic = part.route.settings.output_topic
        ordered = part.route.settings.ordering != "unordered"
        sent: list[SourceRecord] = []  # the records whose output ``delivery`` covers
        values: list[bytes] = []  # and their outputs' values
        queued = perf_counter()
        delivery = Delivery(
            self._sink.ready,
            lambda failures: self._delivered_run(part, sent, values, failures, queued),
        )
        report = delivery.report  # unbound: a failed report is told apart by key and value
        produce = self._sink.producer.produce  # the raw call: Sink.produce's wrapper costs
        for record, value, headers in answers:
            try:
                produce(topic, value, record.key, on_delivery=report, headers=headers)  # type: ignore[arg-type] # see Sink
            except (BufferError, KafkaException):  # the general path waits, or reports
                part.running += 1
                output = OutRecord(topic, record.key, value, tuple(headers))
                self._send(part, record, [output], advance=ordered)
                continue
            sent.append(record)
            values.append(value)
            if ordered:
                self._advance(part, record)
        if sent:
            part.running += len(sent)
            self._unacked += len(sent)
            delivery.seal(len(sent))

    def _without_redeliveries(
        self, part: Partition, run: list[Message], offsets: list[int]
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
        self._unacked -= len(sent)
        self._room.set()
        if part.gone:
            return
        failed = _failed_in_run(sent, values, failures) if failures else {}
        done = [r.offset for i, r in enumerate(sent) if i not in failed]
        part.offsets.done_many(done)
        part.running -= len(done)
        self._load -= len(done)
        part.route.counts.produced += len(done)
        if done:
            self.stages["produce"].observe_many(perf_counter() - queued, len(done))
        topic = part.route.settings.output_topic
        for index, (error, msg) in failed.items():
            record = sent[index]
            headers = record.headers + with_offset(part.trace, record)
            output = OutRecord(topic, record.key, values[index], headers)
            self._delivered(part, record, [output], [(index, error, msg)])

    def _start(self, part: Partition, record: SourceRecord) -> None:
        """Run the handler on ``record``, which its lane admitted."""
        handler = part.route.handler
        if not handler.answers_now:
            self._answered(part, record, None, None)
            return
        started = perf_counter()
        try:
            result = handler.try_now(record)
        except Exception as exc:  # noqa: BLE001 - _answered deals with it
            self._answered(part, record, None, exc)
            return
        if result is not None:
            self.stages["handle"].observe(perf_counter() - started)
        self._answered(part, record, result, None)

    def _answered(
        self,
        part: Partition,
        record: SourceRecord,
        result: Result | None,
        error: Exception | None,
    ) -> None:
        """Go on after ``try_now`` gave ``result`` (None: no answer now) or raised
        ``error``: settle the event, or await the handler in a task."""
        part.running += 1
        if isinstance(error, EventError):
            self._settle(part, record, [self._dead_letter(part.route, record, error, 1)], True)
        elif result is not None and error is None:
            self._settle(part, record, self._outputs(part, record, result), False)
        else:  # no answer yet, or an unexpected error: the awaited path handles it properly
            self._spawned += 1
            self._spawn(part, self._process(part, record))

    async def _process(self, part: Partition, record: SourceRecord) -> None:
        # This task's own context: whatever is logged while handling the event says which.
        EVENT.set(event_fields(part.route.name, *part.tp, record.offset))
        started = perf_counter()
        try:
            outputs, dead = await self._outcome(part, record)
        except SluicegateError as exc:  # fatal: stop, leave the event uncommitted
            self._fail(exc)
            return
        self.stages["handle"].observe(perf_counter() - started)
        self._settle(part, record, outputs, dead)

    def _settle(
        self, part: Partition, record: SourceRecord, outputs: list[OutRecord], dead: bool
    ) -> None:
        """The handler is done with ``record``: stage or send its outputs."""
        try:
            self._cap.record(dead)
        except SluicegateError as exc:  # the DLQ cap: stop, leave the event uncommitted
            self._fail(exc)
            return
        if dead:
            part.route.counts.dead_lettered += 1
            if self._cap.near_limit:
                outputs = [*outputs, *self._cap_alert(part, record)]
        if self._eos:
            part.stage(record.offset, outputs)
            self._staged += 1
            self._finished(part, record)
            self._advance(part, record)
        else:
            self._send(part, record, outputs, advance=True)

    async def _outcome(self, part: Partition, record: SourceRecord) -> tuple[list[OutRecord], bool]:
        """Run the handler, retrying retriable errors; per-event faults become a DLQ record."""
        route = part.route
        attempt = 0
        while True:
            attempt += 1
            try:
                result: Result = await route.handler.handle(record)
            except EventError as exc:
                return [self._dead_letter(route, record, exc, attempt)], True
            except SluicegateError as exc:
                if exc.fatal:
                    raise
                if not exc.retriable:
                    return [self._dead_letter(route, record, exc, attempt)], True
                self.stats.retries += 1
                wait = getattr(exc, "retry_after", None) or backoff(attempt)
                log.info("retrying %s in %.2fs after %s", record.where, wait, exc)
                await asyncio.sleep(wait)
                continue
            except Exception as exc:  # a handler bug hit by this event
                log.exception("handler %s failed on %s", route.settings.handler, record.where)
                return [self._dead_letter(route, record, exc, attempt, "handler")], True
            return self._outputs(part, record, result), False

    def _cap_alert(self, part: Partition, record: SourceRecord) -> list[OutRecord]:
        """The ``dlq.cap_approaching`` alert, at most every ``CAP_ALERT_EVERY_S``."""
        now = time.monotonic()
        if now - self._cap_alerted_at < CAP_ALERT_EVERY_S:
            return []
        self._cap_alerted_at = now
        cap, limits = self._cap, self.settings.dlq
        self.alerts_raised[(part.route.name, "dlq.cap_approaching")] += 1
        alert = Alert(
            kind="dlq.cap_approaching",
            severity="warning",
            dedup_key=f"dlq-cap:{self.settings.kafka.group_id}:{limits.topic}",
            reason=f"dead letters near the DLQ cap: {cap.ratio:.0%} of the last "
            f"{limits.window} events (dlq.max_ratio {limits.max_ratio:g}), {cap.consecutive} "
            f"in a row (dlq.max_consecutive {limits.max_consecutive}); at the cap the "
            "processor stops",
            route=part.route.name,
            source=record.where,
            at=datetime.now(UTC),
            details={
                "window_ratio": cap.ratio, "max_ratio": limits.max_ratio,
                "consecutive": cap.consecutive, "max_consecutive": limits.max_consecutive,
                "window": limits.window, "dlq_topic": limits.topic,
            },
        )  # fmt: skip
        headers = record.headers + with_offset(part.trace, record)
        value = alert.model_dump_json().encode()
        return [OutRecord(self.settings.alerts.topic, record.key, value, headers)]

    def _outputs(self, part: Partition, record: SourceRecord, result: Result) -> list[OutRecord]:
        if result.value is None:
            part.route.counts.skipped += 1
        return output_records(
            record,
            part.route.settings,
            value=result.value,
            alerts=result.alerts,
            alerts_topic=self.settings.alerts.topic,
            trace=with_offset(part.trace, record),
        )

    def _dead_letter(
        self,
        route: Route,
        record: SourceRecord,
        error: BaseException,
        attempts: int,
        stage: str | None = None,
    ) -> OutRecord:
        log.warning(
            "dead-lettering %s: %s: %s", record.where, type(error).__name__, error,
            extra=event_fields(route.name, record.topic, record.partition, record.offset),
        )  # fmt: skip
        return dead_letter(
            record, error, topic=self.settings.dlq.topic, route=route.name,
            handler=route.settings.handler, stage=stage, attempts=attempts,
            max_bytes=self._dlq_max_bytes,
        )  # fmt: skip

    def _send(
        self, part: Partition, record: SourceRecord, outputs: list[OutRecord], *, advance: bool
    ) -> None:
        """At-least-once: queue the outputs; the offset is done when all are acknowledged.

        ``advance``: let the next event of the record's lane start once its outputs are
        queued (in order); false on redelivery, when that already happened.
        """
        if not outputs:
            self._finished(part, record)
            if advance:
                self._advance(part, record)
            return
        queued = perf_counter()
        delivery = Delivery(
            self._sink.ready,
            lambda failures: self._delivered(part, record, outputs, failures, queued),
            len(outputs),
        )
        for i, out in enumerate(outputs):
            try:
                self._sink.send_nowait(out, partial(delivery.report, index=i))
            except BufferError:  # librdkafka's queue is full: wait for room in a task
                rest = self._send_rest(part, record, outputs, i, delivery, advance=advance)
                self._spawn(part, rest)
                return
            except KafkaError as exc:  # refused before queueing, e.g. too large
                delivery.refused(exc, unsent=len(outputs) - i)
                self._sink.wake()
                break
        if advance:
            self._advance(part, record)

    async def _send_rest(
        self,
        part: Partition,
        record: SourceRecord,
        outputs: list[OutRecord],
        start: int,
        delivery: Delivery,
        *,
        advance: bool,
    ) -> None:
        for i in range(start, len(outputs)):
            try:
                await self._sink.send(outputs[i], partial(delivery.report, index=i))
            except KafkaError as exc:
                delivery.refused(exc, unsent=len(outputs) - i)
                self._sink.wake()
                break
        if advance:
            self._advance(part, record)

    def _spawn(self, part: Partition, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        part.tasks.add(task)
        task.add_done_callback(part.tasks.discard)

    def _delivered(
        self,
        part: Partition,
        record: SourceRecord,
        outputs: list[OutRecord],
        failures: list[Failure],
        queued: float | None = None,
    ) -> None:
        """Every output of ``record`` reported. On failure retry if it may help, else
        dead-letter; never drop."""
        if not failures:
            part.route.counts.produced += len(outputs)
            if queued is not None:
                self.stages["produce"].observe(perf_counter() - queued)
            self._finished(part, record)
            return
        if part.gone:
            return
        error = failures[0][1]
        if error.retriable:
            retry = outputs
        elif all(o.topic == self.settings.dlq.topic for o in outputs):
            self._fail(error)  # not even the DLQ takes it: stop rather than lose it
            return
        else:
            retry = [self._dead_letter(part.route, record, error, 1, "produce")]
            part.route.counts.dead_lettered += 1
        self.stats.retries += 1
        self._spawn(part, self._send_later(part, record, retry))

    async def _send_later(
        self, part: Partition, record: SourceRecord, outputs: list[OutRecord]
    ) -> None:
        await asyncio.sleep(backoff(1))
        self._send(part, record, outputs, advance=False)

    def _advance(self, part: Partition, record: SourceRecord) -> None:
        nxt = part.lanes.finished(record)
        if nxt is not None and not part.gone:
            self._start(part, nxt)

    def _finished(self, part: Partition, record: SourceRecord) -> None:
        """The event's outputs are acknowledged (or staged): its offset may be committed."""
        if part.gone:
            return
        part.running -= 1
        part.offsets.done(record.offset)
        if not self._eos:
            self._load -= 1

    # --- backpressure --------------------------------------------------------------------

    def _backpressure(self) -> None:
        p = self.settings.processing
        blocked = any(condition() for condition in self._pause_while)
        full = blocked or self._load >= p.max_in_flight
        calm = not blocked and self._load <= p.max_in_flight * p.resume_ratio
        per_calm = p.max_in_flight_per_partition * p.resume_ratio
        pause, resume = [], []
        for tp, part in self._parts.items():
            if not part.paused and (full or part.load >= p.max_in_flight_per_partition):
                part.paused = True
                pause.append(tp)
            elif part.paused and calm and part.load <= per_calm:
                part.paused = False
                resume.append(tp)
        if pause:
            self._source.pause(pause)
            self.stats.pauses += len(pause)
        if resume:
            self._source.resume(resume)
            self.stats.resumes += len(resume)

    # --- commits -------------------------------------------------------------------------

    async def _commit(self, parts: list[Partition] | None = None) -> dict[TP, int]:
        """Commit what is committable; at-least-once returns the offsets for the caller to
        commit synchronously instead when ``parts`` is given (revoke, shutdown)."""
        self._last_commit = time.monotonic()
        if self._eos:
            await self._commit_transaction()
            return {}
        chosen = list(self._parts.values()) if parts is None else parts
        offsets = {}
        for part in chosen:
            offset = part.new_committable()
            if offset is not None:
                offsets[part.tp] = offset
                part.committed_to(offset)
        if offsets:
            self.stats.commits += 1
            if parts is None:
                self._source.commit(offsets, asynchronous=True)
        return offsets

    async def _commit_transaction(self) -> None:
        async with self._commit_lock:
            taken: dict[TP, int] = {}
            records: list[OutRecord] = []  # what the open transaction lacks
            for part in self._parts.values():
                offset = part.new_committable()
                if offset is not None:
                    taken[part.tp] = offset
                    records.extend(part.take_unsent(offset))
            if not taken:
                return
            started = perf_counter()
            for attempt in range(1, 6):
                try:
                    metadata = self._source.consumer.consumer_group_metadata()
                    await self._sink.commit_transaction(records, taken, metadata)
                    break
                except TransactionAborted as exc:
                    self.stats.aborted_transactions += 1
                    log.warning("transaction aborted (attempt %d): %s", attempt, exc)
                except ProducerFenced as exc:
                    self.stats.aborted_transactions += 1
                    log.warning("producer fenced, recreating it: %s", exc)
                    await self._sink.close()
                    self._sink = self._new_sink()
                    await self._sink.start()
                # Whatever was produced into the failed transaction is gone: send it all.
                records = [
                    out
                    for tp, offset in taken.items()
                    if (owner := self._parts.get(tp)) is not None
                    for out in owner.staged_below(offset)
                ]
                await asyncio.sleep(backoff(attempt))
            else:
                self._fail(TransactionAborted("five transactions in a row failed; stopping"))
                return
            self.stats.transactions += 1
            took = perf_counter() - started
            for tp, offset in taken.items():
                owner = self._parts.get(tp)
                if owner is not None:
                    events, outputs = owner.committed_to(offset)
                    self._load -= events
                    self._staged -= events
                    owner.route.counts.produced += outputs
                    if events:
                        self.stages["produce"].observe_many(took, events)

    def _send_staged(self) -> None:
        """Exactly-once: produce the staged outputs of the committable prefix into the
        open transaction now, so that the commit has little left to send and wait for.
        Not while a commit runs: its transaction takes no more records."""
        if self._committing:
            return
        for part in self._parts.values():
            offset = part.new_committable()
            if offset is not None and part.unsent and part.unsent[0] < offset:
                self._sink.stage(part.take_unsent(offset))

    # --- rebalances: called on the loop from the consumer thread ---------------------------

    async def _on_assign(self, tps: list[TP]) -> None:
        for tp in tps:
            self._parts[tp] = Partition(tp, self._routes[tp[0]])
        log.info("assigned %s", sorted(tps))
        self.assigned.set()

    async def _on_revoke(self, tps: list[TP]) -> Mapping[TP, int]:
        parts = [self._parts[tp] for tp in tps if tp in self._parts]
        await self._drain(parts, self._revoke_deadline())
        offsets = await self._commit(parts)
        self._forget(parts)
        log.info("revoked %s", sorted(tps))
        return offsets

    async def _on_lost(self, tps: list[TP]) -> None:
        self._forget([self._parts[tp] for tp in tps if tp in self._parts])
        log.warning("lost %s without a chance to commit", sorted(tps))
        if self._eos:  # the open transaction may hold outputs of theirs: drop it
            async with self._commit_lock:
                await self._sink.abort()
                for part in self._parts.values():
                    part.all_unsent()

    def _revoke_deadline(self) -> float:
        return time.monotonic() + self.settings.processing.shutdown_timeout_s

    async def _drain(self, parts: list[Partition], deadline: float) -> None:
        """Let the running events of ``parts`` finish until ``deadline``, then cancel."""
        while any(p.running for p in parts) and time.monotonic() < deadline:
            if self._fatal is not None:
                break
            await asyncio.sleep(0.01)
        for part in parts:
            for task in list(part.tasks):
                task.cancel()

    def _forget(self, parts: list[Partition]) -> None:
        for part in parts:
            part.gone = True
            for task in list(part.tasks):
                task.cancel()
            self._load -= part.load
            self._staged -= len(part.staged)
            self._parts.pop(part.tp, None)

    # --- shutdown ------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        parts = list(self._parts.values())
        deadline = time.monotonic() + self.settings.processing.shutdown_timeout_s
        try:
            if self._committer is not None:  # its failure, if any, went to _fail already
                with contextlib.suppress(Exception):
                    await self._committer
            if self._fatal is None or isinstance(self._fatal, SluicegateError):
                await self._drain(parts, deadline)
                offsets = await self._commit(parts)
                if offsets:
                    await self._source.commit_sync(offsets)
        finally:
            for part in parts:
                for task in list(part.tasks):
                    task.cancel()
            await self._source.close()
            await self._sink.close()
            for route in self.routes():
                await route.handler.aclose()


def _failed_in_run(
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


def _source_record(topic: str, partition: int, offset: int, msg: Message) -> SourceRecord:
    raw = msg.headers()
    kind, ts = msg.timestamp()
    return make(SourceRecord, (
        topic, partition, offset, msg.key(), msg.value(), header_tuples(raw) if raw else (),
        ts if kind else None,
    ))  # fmt: skip
