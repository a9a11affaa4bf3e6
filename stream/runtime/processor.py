"""The processor: consume -> handle -> produce -> commit, without losing an event.

One asyncio loop owns all state; each partition's lives in its ``Partition``, and every
count (events held, running, staged) is derived from there. What happens to an event's
outputs and how offsets commit is the ``Guarantee``'s (at-least-once or exactly-once).
Assignment changes (assign, revoke, lost) go through one place, which also reconciles
librdkafka's pause flags. Queued events of an ordered lane are started by a loop, never
by recursion through callbacks, and a watchdog says which partition is stuck.

Events whose handler answers at once take a fast path: a polled run of one partition's
records is handled in one go and its outputs share one delivery. Everything else (an
awaited handler, a dead letter, an alert, a failed delivery) goes one event at a time.
Both paths finish, advance and settle events through the same primitives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping, MutableMapping, Sequence
from time import perf_counter
from typing import Any

from confluent_kafka import Message

from handlers.base import Handler, Result
from handlers.model import ModelPort
from schemas.records import OutRecord, SourceRecord
from stream.config import Settings
from stream.dlq import DlqCap
from stream.errors import ConfigError, EventError, SluicegateError
from stream.kafka.admin import partition_counts
from stream.kafka.errors import map_kafka_error
from stream.kafka.headers import with_offset
from stream.kafka.source import Source
from stream.model.service import ModelService
from stream.routes import build_routes
from stream.runtime.atleastonce import AtLeastOnce
from stream.runtime.deadletters import DeadLetters
from stream.runtime.exactlyonce import ExactlyOnce
from stream.runtime.fastpath import instant, source_record, without_redeliveries
from stream.runtime.guarantee import Guarantee
from stream.runtime.offsets import increasing
from stream.runtime.partition import TP, Partition, Route, output_records
from stream.runtime.watchdog import Stall, Watchdog
from stream.telemetry.histogram import Histogram
from stream.telemetry.logs import EVENT, event_fields
from stream.telemetry.stats import Stats, backoff

log = logging.getLogger("stream.runtime")

POLL_S = 0.1  # how long a poll waits for records
# How long the loop may hold off polling while room in the in-flight bounds is on its way.
ROOM_WAIT_S = 1.0
STAGES = ("handle", "produce")
SNAPSHOT_AT_SHUTDOWN_S = 5.0  # the last snapshot of the learned tiers: warm state only


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
        self._source = Source(
            settings.kafka,
            self._routes,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
            on_commit=self._on_commit,
        )
        self._parts: dict[TP, Partition] = {}
        self._guarantee: Guarantee = (
            ExactlyOnce(self) if settings.processing.guarantee == "exactly-once"
            else AtLeastOnce(self)
        )  # fmt: skip
        self._fatal: BaseException | None = None
        self.dead_letters = DeadLetters(settings, self.fail)
        # Seconds per event in each stage: ``handle`` (the handler, model calls and
        # retries included) and ``produce`` (queued until acknowledged; exactly-once:
        # the transaction's commit).
        self.stages = {stage: Histogram() for stage in STAGES}
        self.watchdog = Watchdog(settings.processing.stall_timeout_s)
        self._pause_while = tuple(pause_while)
        self._stop = asyncio.Event()
        self.room = asyncio.Event()  # set whenever events finish
        self._ready: deque[tuple[Partition, SourceRecord]] = deque()  # lanes' next events
        self._starting = False
        self._deadline: float | None = None  # shutdown's: revokes during close() share it
        self._reconcile: set[TP] = set()  # assigned since the last poll: pause state to set
        self.assigned = asyncio.Event()
        # The model's share of the account's limits follows the partitions of model routes
        # this replica owns; asks that only wait for budget are given up at a revoke.
        self._model = model if isinstance(model, ModelService) else None
        self._model_topics = {
            t for r in self.routes() if r.handler.uses_model for t in r.settings.input_topics
        }
        self._model_partitions = 0  # all partitions of those topics, read at start
        self.snapshots = self._student_snapshots()
        self._snapshot_task: asyncio.Task[None] | None = None

    def _student_snapshots(self) -> Any:
        """The learned tiers' warm state in Kafka (None: no route learns, or it is off)."""
        tiers: dict[str, tuple[Any, str]] = {
            r.name: (getattr(r.handler, "learner", None), r.handler.name) for r in self.routes()
        }
        tiers = {route: tier for route, tier in tiers.items() if tier[0] is not None}
        every = self.settings.processing.student_snapshot_s
        if not tiers or every <= 0:
            return None
        from stream.learn.snapshot import StudentSnapshots  # noqa: PLC0415 - scikit-learn

        return StudentSnapshots(self.settings.kafka, tiers, every)

    def stop(self) -> None:
        """Ask for a graceful stop: drain, commit, close. Safe from a signal handler."""
        self._stop.set()

    @property
    def parts(self) -> MutableMapping[TP, Partition]:
        return self._parts

    @property
    def partitions(self) -> Mapping[TP, Partition]:
        return self._parts

    @property
    def dlq_cap(self) -> DlqCap:
        return self.dead_letters.cap

    @property
    def alerts_raised(self) -> Counter[tuple[str, str]]:
        """Alerts the processor raised itself, by (route, kind); handlers count theirs."""
        return self.dead_letters.alerts_raised

    @property
    def stalls(self) -> list[Stall]:
        """The partitions the watchdog finds stuck now."""
        return list(self.watchdog.stalls.values())

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
        sink = self._guarantee.sink
        await sink.start()
        if self._model is not None and self._model_topics:
            counts = await asyncio.get_running_loop().run_in_executor(
                None, partition_counts, self.settings.kafka, self._model_topics
            )
            self._model_partitions = sum(counts.values())
        if self.snapshots is not None:  # warm before the first event
            await asyncio.get_running_loop().run_in_executor(None, self.snapshots.load)
            self._snapshot_task = asyncio.create_task(self.snapshots.periodic())
        await self._source.start()
        try:
            while not self._stop.is_set():
                await self._wait_for_room()
                wait_s = self._guarantee.poll_wait(POLL_S)
                msgs = await self._source.poll(p.max_poll_records, wait_s)
                if msgs:
                    # The loop serves the delivery reports of what it queues itself, once
                    # the batch is out, instead of fighting the poller thread for the GIL.
                    sink = self._guarantee.sink
                    sink.hold()
                    try:
                        self._receive(msgs)
                    finally:
                        sink.serve()
                self._backpressure()
                self.watchdog.check(self._parts.values())
                await self._guarantee.after_poll(bool(msgs))
        finally:
            await self._shutdown()
        if self._fatal is not None:
            raise self._fatal

    def fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            log.error("stopping: %s", error)
        self._stop.set()

    async def _wait_for_room(self) -> None:
        """When the next poll could reach an in-flight bound and room is on its way,
        wait for it a little before polling: a pause would cost more, since librdkafka
        drops what it prefetched for a paused partition."""
        deadline = time.monotonic() + ROOM_WAIT_S
        more = self.settings.processing.max_poll_records
        while self._near_bounds(more) and not self._stop.is_set():
            left = deadline - time.monotonic()
            coming = self._guarantee.room_coming()
            if coming is None or left <= 0:
                if coming is not None:
                    coming.close()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(coming, left)

    def _near_bounds(self, more: int) -> bool:
        """True if ``more`` events would bring the events held in memory, in all or in
        one partition, to their bound."""
        p = self.settings.processing
        parts = self._parts.values()
        if sum(part.load for part in parts) + more >= p.max_in_flight:
            return True
        per_partition = p.max_in_flight_per_partition - more
        return any(part.load >= per_partition for part in parts)

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
            self.fail(mapped)
        else:
            log.warning("consumer: %s", mapped)

    def _take(self, topic: str, partition: int, run: list[Message]) -> None:
        """Start consecutive records of one partition, in offset order."""
        part = self._parts.get((topic, partition))
        if part is None or part.closing or self._fatal is not None:
            return  # fetched just before a revoke: the new owner reads it again
        offsets = [msg.offset() or 0 for msg in run]
        if offsets[0] <= part.offsets.highest or not increasing(offsets):
            run, offsets = without_redeliveries(part, run, offsets)
        part.offsets.started_many(offsets)
        part.route.counts.consumed += len(run)
        if part.route.handler.answers_now:
            answers = instant(part, run, offsets, answered_later=self._answered,
                              dead_letters=self.dead_letters, stages=self.stages)  # fmt: skip
            self._guarantee.settle_run(part, answers)
            return
        for msg, offset in zip(run, offsets, strict=True):
            record = source_record(topic, partition, offset, msg)
            if part.lanes.admit(record):
                self._answered(part, record, None, None)

    # --- the general path, one event at a time ---------------------------------------------

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
        self, part: Partition, record: SourceRecord, result: Result | None, error: Exception | None
    ) -> bool:
        """Go on after ``try_now`` gave ``result`` (None: no answer now) or raised
        ``error``: settle the event, or await the handler in a task (then True)."""
        if isinstance(error, EventError):
            self._settle(
                part, record, [self.dead_letters.record(part.route, record, error, 1)], True
            )
        elif result is not None and error is None:
            self._settle(part, record, self._outputs(part, record, result), False)
        else:  # no answer yet, or an unexpected error: the awaited path handles it properly
            self.spawn(part, self._process(part, record))
            return True
        return False

    async def _process(self, part: Partition, record: SourceRecord) -> None:
        # This task's own context: whatever is logged while handling the event says which.
        EVENT.set(event_fields(part.route.name, *part.tp, record.offset))
        started = perf_counter()
        try:
            outputs, dead = await self._outcome(part, record)
        except SluicegateError as exc:  # fatal: stop, leave the event uncommitted
            self.fail(exc)
            return
        except asyncio.CancelledError:  # revoked or shutting down: the next owner has it
            part.abandoned.add(record.offset)
            raise
        self.stages["handle"].observe(perf_counter() - started)
        self._settle(part, record, outputs, dead)

    async def _outcome(self, part: Partition, record: SourceRecord) -> tuple[list[OutRecord], bool]:
        """Run the handler, retrying retriable errors; per-event faults become a DLQ record."""
        route = part.route
        attempt = 0
        while True:
            attempt += 1
            try:
                result: Result = await route.handler.handle(record)
            except EventError as exc:
                return [self.dead_letters.record(route, record, exc, attempt)], True
            except SluicegateError as exc:
                if exc.fatal:
                    raise
                if not exc.retriable:
                    return [self.dead_letters.record(route, record, exc, attempt)], True
                self.stats.retries += 1
                wait = getattr(exc, "retry_after", None) or backoff(attempt)
                log.info("retrying %s in %.2fs after %s", record.where, wait, exc)
                await asyncio.sleep(wait)
                continue
            except Exception as exc:  # a handler bug hit by this event
                log.exception("handler %s failed on %s", route.settings.handler, record.where)
                return [self.dead_letters.record(route, record, exc, attempt, "handler")], True
            return self._outputs(part, record, result), False

    def _settle(
        self, part: Partition, record: SourceRecord, outputs: list[OutRecord], dead: bool
    ) -> None:
        """The handler is done with ``record``: count it, then settle its outputs."""
        if part.gone:
            return
        if not self.dead_letters.counted(dead):
            return  # the DLQ cap stopped us: the event stays uncommitted
        if dead:
            part.route.counts.dead_lettered += 1
            outputs = [*outputs, *self.dead_letters.cap_alert(part, record)]
        self._guarantee.settle(part, record, outputs)

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

    # --- primitives both paths and both guarantees share ---------------------------------

    def finished(self, part: Partition, offsets: list[int]) -> None:
        """These events' outputs are acknowledged (or staged): their offsets may commit."""
        if not part.gone and offsets:
            if len(offsets) == 1:
                part.done(offsets[0])
            else:
                part.done_many(offsets)
            self.room.set()

    def advance(self, part: Partition, record: SourceRecord) -> None:
        """``record`` is out of its lane's way: start the next event of the lane. Started
        by a loop over a queue, never by recursion, however long the lane; a closing
        partition starts none (they stay uncommitted for the next owner)."""
        if part.closing or part.route.settings.ordering == "unordered":
            return
        nxt = part.lanes.finished(record)
        if nxt is None:
            return
        self._ready.append((part, nxt))
        if self._starting:
            return  # the loop below, further up the stack, starts it
        self._starting = True
        try:
            while self._ready:
                owner, queued = self._ready.popleft()
                if not owner.gone:
                    self._start(owner, queued)
        finally:
            self._starting = False

    def spawn(self, part: Partition, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        part.tasks.add(task)
        task.add_done_callback(part.tasks.discard)

    def group_metadata(self) -> object:
        """As of the last poll or the rebalance under way; never a call into the consumer
        from the loop (see ``Source.group_metadata``)."""
        metadata = self._source.group_metadata
        if metadata is None:
            raise RuntimeError("no poll has returned yet: nothing can have been consumed")
        return metadata

    def commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        self._source.commit(offsets, asynchronous=True)

    # --- backpressure --------------------------------------------------------------------

    def _backpressure(self) -> None:
        if self._reconcile:
            fresh = [tp for tp in self._reconcile if tp in self._parts]
            self._reconcile.clear()
            self._source.resume(fresh)  # new partitions start unpaused, on both sides
        p = self.settings.processing
        blocked = any(condition() for condition in self._pause_while)
        load = sum(part.load for part in self._parts.values())
        full = blocked or load >= p.max_in_flight
        calm = not blocked and load <= p.max_in_flight * p.resume_ratio
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

    # --- assignment changes: called on the loop from the consumer thread -------------------

    async def _on_assign(self, tps: list[TP]) -> None:
        for tp in tps:
            self._parts[tp] = Partition(tp, self._routes[tp[0]])
        # librdkafka keeps a partition's pause flag across revoke and re-assign, and a
        # new Partition starts unpaused: librdkafka is told so after this poll returns
        # (not from inside its rebalance callback, which holds the consumer).
        self._reconcile.update(tps)
        log.info("assigned %s", sorted(tps))
        self._share_model()
        self.assigned.set()

    def _share_model(self) -> None:
        """Take the share of the account's model limits this assignment gives."""
        if self._model is None or not self._model_partitions:
            return
        owned = sum(1 for tp in self._parts if tp[0] in self._model_topics)
        share = min(1.0, owned / self._model_partitions)
        self._model.set_share(share)
        log.info("model limits: %.0f%% of the account's (%d of %d partitions)",
                 share * 100, owned, self._model_partitions)  # fmt: skip

    async def _on_revoke(self, tps: list[TP]) -> Mapping[TP, int]:
        parts = [self._parts[tp] for tp in tps if tp in self._parts]
        deadline = time.monotonic() + self.settings.processing.shutdown_timeout_s
        if self._deadline is not None:
            deadline = min(deadline, self._deadline)
        await self._drain(parts, deadline)
        offsets = await self._guarantee.release(parts)
        self._forget(parts)
        log.info("revoked %s", sorted(tps))
        self._share_model()
        return offsets

    async def _on_lost(self, tps: list[TP]) -> None:
        parts = [self._parts[tp] for tp in tps if tp in self._parts]
        await self._guarantee.lost(parts, self._forget)
        log.warning("lost %s without a chance to commit", sorted(tps))
        self._share_model()

    def _on_commit(self, results: list[tuple[TP, int, str | None]]) -> None:
        self._guarantee.on_commit(results)

    async def _drain(self, parts: list[Partition], deadline: float) -> None:
        """Let the running events of ``parts`` finish until ``deadline`` (queued ones
        do not start), then cancel what is left and wait for it to end."""
        for part in parts:
            part.closing = True
        if self._model is not None:  # only waiting for budget: the new owner takes them
            waiting = self._model.unsent_tasks()
            for task in [t for part in parts for t in part.tasks if t in waiting]:
                task.cancel()
        while any(p.running for p in parts) and self._fatal is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.room.wait(), min(left, 0.05))
        tasks = [task for part in parts for task in part.tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _forget(self, parts: list[Partition]) -> None:
        for part in parts:
            part.gone = True
            for task in list(part.tasks):
                task.cancel()
            self._parts.pop(part.tp, None)

    # --- shutdown ------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        parts = list(self._parts.values())
        self._deadline = time.monotonic() + self.settings.processing.shutdown_timeout_s
        try:
            await self._guarantee.close()
            if self._fatal is None or isinstance(self._fatal, SluicegateError):
                await self._drain(parts, self._deadline)
                offsets = await self._guarantee.release(parts)
                if offsets:
                    await self._source.commit_sync(offsets)
        finally:
            tasks = [task for part in parts for task in part.tasks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._source.close()
            await self._guarantee.sink.close()
            await self._last_snapshot()
            for route in self.routes():
                await route.handler.aclose()

    async def _last_snapshot(self) -> None:
        """The learned tiers' state once more at shutdown (what they learned last)."""
        if self._snapshot_task is not None:
            self._snapshot_task.cancel()
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        if self.snapshots is None:
            return
        for route in self.routes():
            learner = getattr(route.handler, "learner", None)
            if learner is not None:
                await learner.drain()
        try:
            await self.snapshots.save(flush_s=SNAPSHOT_AT_SHUTDOWN_S)  # a broker away: short
        except Exception as exc:  # noqa: BLE001 - shutdown goes on; the state is warm-only
            log.warning("learned tier snapshot not written at shutdown: %s", exc)
