"""The processor: consume -> handle -> produce -> commit, without losing an event.

One asyncio loop owns all state. An event's offset becomes committable only when every
output it produced is acknowledged (at-least-once) or staged for the next transaction
(exactly-once, where outputs and offsets are committed together). Bounds on in-flight
events pause partitions; polling never stops, so group membership stays alive.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from confluent_kafka import Message

from handlers.base import Handler, Result
from handlers.model import ModelPort
from schemas.records import OutRecord, SourceRecord
from stream.config import Settings
from stream.delivery import Delivery
from stream.dlq import DlqCap, dead_letter
from stream.errors import (
    ConfigError,
    EventError,
    KafkaError,
    ProducerFenced,
    SluicegateError,
    TransactionAborted,
)
from stream.kafka.errors import map_kafka_error
from stream.kafka.headers import message_headers, with_offset
from stream.kafka.sink import Sink
from stream.kafka.source import Source
from stream.partition import TP, Partition, Route, output_records
from stream.routes import build_routes
from stream.stats import Stats, backoff

log = logging.getLogger(__name__)


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
        self._cap = DlqCap(settings.dlq)
        self._pause_while = tuple(pause_while)
        self._stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._commit_lock = asyncio.Lock()
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

    # --- the main loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Process until stopped; re-raise the fatal error that stopped it, if any."""
        p = self.settings.processing
        await self._sink.start()
        await self._source.start()
        try:
            while not self._stop.is_set():
                for msg in await self._source.poll(p.max_poll_records, 0.1):
                    self._receive(msg)
                self._backpressure()
                due = time.monotonic() - self._last_commit >= p.commit_interval_ms / 1000
                # Exactly-once keeps outputs until the commit; commit before they fill
                # the in-flight bound rather than pausing until the timer.
                if due or (self._eos and self._staged >= p.max_in_flight // 2):
                    await self._commit()
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            log.error("stopping: %s", error)
        self._stop.set()

    def _receive(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            mapped = map_kafka_error(err, "consuming")
            if err.fatal():
                self._fail(mapped)
            else:
                log.warning("consumer: %s", mapped)
            return
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        part = self._parts.get((topic, partition))
        if part is None:  # fetched just before a revoke: the new owner reads it again
            return
        if part.offsets.seen(offset):
            # librdkafka may rewind a fetch position after pause/resume or a rebalance
            # (e.g. librdkafka#4686); the first copy is still tracked, so skip this one.
            self.stats.redelivered += 1
            log.debug("skipping redelivered %s[%d]@%d", topic, partition, offset)
            return
        kind, ts = msg.timestamp()
        record = SourceRecord(
            topic, partition, offset, msg.key(), msg.value(), message_headers(msg),
            ts if kind else None,
        )  # fmt: skip
        part.offsets.started(offset)
        self._load += 1
        self.stats.consumed += 1
        if part.lanes.admit(record):
            self._start(part, record)

    def _start(self, part: Partition, record: SourceRecord) -> None:
        part.running += 1
        handler = part.route.handler
        if handler.answers_now:
            try:
                result = handler.try_now(record)
            except EventError as exc:
                self._settle(part, record, [self._dead_letter(part.route, record, exc, 1)], True)
                return
            except Exception:  # noqa: BLE001 - the awaited path below handles it properly
                result = None
            if result is not None:
                self._settle(part, record, self._outputs(part, record, result), False)
                return
        task = asyncio.create_task(self._process(part, record))
        part.tasks.add(task)
        task.add_done_callback(part.tasks.discard)

    async def _process(self, part: Partition, record: SourceRecord) -> None:
        try:
            outputs, dead = await self._outcome(part, record)
        except SluicegateError as exc:  # fatal: stop, leave the event uncommitted
            self._fail(exc)
            return
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
        self.stats.dead_lettered += dead
        if self._eos:
            part.staged[record.offset] = outputs
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

    def _outputs(self, part: Partition, record: SourceRecord, result: Result) -> list[OutRecord]:
        if result.value is None:
            self.stats.skipped += 1
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
        log.warning("dead-lettering %s: %s: %s", record.where, type(error).__name__, error)
        return dead_letter(
            record, error, topic=self.settings.dlq.topic, route=route.name,
            handler=route.settings.handler, stage=stage, attempts=attempts,
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
        delivery = Delivery(
            len(outputs), lambda failure: self._delivered(part, record, outputs, failure)
        )
        for i, out in enumerate(outputs):
            try:
                self._sink.send_nowait(out, delivery)
            except BufferError:  # librdkafka's queue is full: wait for room in a task
                self._spawn(part, self._send_rest(part, record, outputs[i:], delivery, advance))
                return
            except KafkaError as exc:  # refused before queueing, e.g. too large
                delivery.refused(exc, unsent=len(outputs) - i)
                break
        if advance:
            self._advance(part, record)

    async def _send_rest(
        self,
        part: Partition,
        record: SourceRecord,
        rest: list[OutRecord],
        delivery: Delivery,
        advance: bool,
    ) -> None:
        for i, out in enumerate(rest):
            try:
                await self._sink.send(out, delivery)
            except KafkaError as exc:
                delivery.refused(exc, unsent=len(rest) - i)
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
        error: KafkaError | None,
    ) -> None:
        """Every output of ``record`` reported. On failure retry if it may help, else
        dead-letter; never drop."""
        if error is None:
            self.stats.produced += len(outputs)
            self._finished(part, record)
            return
        if part.gone:
            return
        if error.retriable:
            retry = outputs
        elif all(o.topic == self.settings.dlq.topic for o in outputs):
            self._fail(error)  # not even the DLQ takes it: stop rather than lose it
            return
        else:
            retry = [self._dead_letter(part.route, record, error, 1, "produce")]
            self.stats.dead_lettered += 1
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
            ready = part.take_committable()
            if ready is not None:
                offsets[part.tp] = ready[0]
                part.committed_to(ready[0])
        if offsets:
            self.stats.commits += 1
            if parts is None:
                self._source.commit(offsets, asynchronous=True)
        return offsets

    async def _commit_transaction(self) -> None:
        async with self._commit_lock:
            taken: dict[TP, int] = {}
            records: list[OutRecord] = []
            for part in self._parts.values():
                ready = part.take_committable()
                if ready is not None:
                    taken[part.tp] = ready[0]
                    records.extend(ready[1])
            if not taken:
                return
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
                await asyncio.sleep(backoff(attempt))
            else:
                self._fail(TransactionAborted("five transactions in a row failed; stopping"))
                return
            self.stats.transactions += 1
            self.stats.produced += len(records)
            for tp, offset in taken.items():
                owner = self._parts.get(tp)
                if owner is not None:
                    released = owner.committed_to(offset)
                    self._load -= released
                    self._staged -= released

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
            for route in {id(r): r for r in self._routes.values()}.values():
                await route.handler.aclose()
