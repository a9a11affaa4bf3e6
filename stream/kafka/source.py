"""The consumer side: librdkafka's consumer on one thread of its own, batches to the loop.

Every blocking call (consume, close) runs on a single dedicated thread, so the event loop
never blocks. Rebalance callbacks run on that thread inside ``consume()``; they hand the
work to the loop and wait for it (``run_coroutine_threadsafe``), which is safe because
the loop is only ever *awaiting* that thread. Non-blocking calls (pause, resume, async
commit) are made from the loop directly; librdkafka handles are thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from stream.config import KafkaSettings, LibrdkafkaValue
from stream.kafka.errors import map_kafka_error
from stream.telemetry.logs import librdkafka_logger

log = logging.getLogger(__name__)

TP = tuple[str, int]
# Called on the loop when partitions are revoked; returns offsets to commit for them.
RevokeHook = Callable[[list[TP]], Coroutine[Any, Any, Mapping[TP, int]]]
AssignHook = Callable[[list[TP]], Coroutine[Any, Any, None]]
# Called on the loop when the broker answered an offset commit: (partition, offset, error).
CommitHook = Callable[[list[tuple[TP, int, str | None]]], None]
T = TypeVar("T")


def consumer_config(
    kafka: KafkaSettings, *, isolation: str = "read_committed"
) -> dict[str, LibrdkafkaValue]:
    """The consumer settings the runtime relies on; ``kafka.consumer_extra`` may override
    tuning keys but not the ones that would break the no-loss guarantee."""
    conf: dict[str, LibrdkafkaValue] = {
        **kafka.client_config(),
        "group.id": kafka.group_id,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "queued.max.messages.kbytes": 32768,
        # With the prefetch queue full librdkafka waits this long before fetching again
        # (default 1 s): far longer than the runtime takes to drain the queue.
        "fetch.queue.backoff.ms": 20,
        # A member that died (kill -9, a lost node) holds its partitions until its session
        # times out: 45 s by default. 10 s lets a replacement take over within seconds
        # while riding out a few missed heartbeats (they come from librdkafka's own
        # thread, not the Python loop, so a busy loop does not miss them).
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 2000,
        **kafka.consumer_extra,
        # Not overridable: offsets are committed by the runtime, after delivery only.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": isolation,
        "enable.partition.eof": False,
    }
    return conf


class Source:
    """A subscribed consumer whose blocking work happens on its own thread."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Iterable[str],
        *,
        on_assign: AssignHook,
        on_revoke: RevokeHook,
        on_lost: AssignHook,
        on_commit: CommitHook | None = None,
    ) -> None:
        self._conf = consumer_config(kafka)
        self._topics = list(topics)
        self._hooks = (on_assign, on_revoke, on_lost)
        self._on_commit = on_commit
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sluicegate-consumer")
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # The group's metadata for a transaction's offsets, as of the last poll or the
        # rebalance callback under way. Read on the consumer's thread only: from any other
        # thread librdkafka's call waits until that thread polls again, so the loop asking
        # for it while a rebalance callback waits for the loop would never return.
        self.group_metadata: object | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError("Source.start() was not called")
        return self._consumer

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        conf: dict[str, Any] = dict(self._conf)
        if self._on_commit is not None:
            conf["on_commit"] = self._committed
        self._consumer = Consumer(conf, logger=librdkafka_logger())
        self._consumer.subscribe(
            self._topics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )

    async def poll(self, max_records: int, wait_s: float) -> list[Message]:
        """Up to ``max_records`` messages: as soon as there is one, with those already
        fetched behind it; an empty list after ``wait_s`` seconds without any."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, self._consume, max_records, wait_s)
        except KafkaException as exc:
            raise map_kafka_error(exc, "consuming") from None

    def _consume(self, max_records: int, wait_s: float) -> list[Message]:
        """(consumer thread) The first message as soon as it is there, then those queued
        behind it, then the group's metadata as it now stands. ``consume(n, wait)`` alone
        would return only once ``n`` messages are there or ``wait`` is over: at a trickle
        every record would wait out ``wait`` before the loop sees it."""
        consumer = self.consumer
        first = consumer.poll(wait_s)
        msgs = [] if first is None else [first]
        if first is not None and max_records > 1:
            msgs.extend(consumer.consume(max_records - 1, 0))
        self.group_metadata = consumer.consumer_group_metadata()
        return msgs

    def pause(self, tps: Iterable[TP]) -> None:
        self.consumer.pause([TopicPartition(t, p) for t, p in tps])

    def resume(self, tps: Iterable[TP]) -> None:
        self.consumer.resume([TopicPartition(t, p) for t, p in tps])

    def lag(self, finished: Mapping[TP, int | None]) -> dict[TP, int]:
        """Messages behind the high watermark per partition: from ``finished`` (the next
        offset after the ones done; None: nothing started, so the consumer's position).
        Local reads of what the last fetch responses said, no request to the broker;
        partitions without a fetch yet are left out."""
        lags: dict[TP, int] = {}
        consumer = self._consumer
        if consumer is None or self._closed:
            return lags
        for (topic, partition), upto in finished.items():
            tp = TopicPartition(topic, partition)
            try:
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                done = consumer.position([tp])[0].offset if upto is None else upto
            except KafkaException:
                continue
            if high >= 0 and done >= 0:
                lags[(topic, partition)] = max(0, high - done)
        return lags

    def commit(self, offsets: Mapping[TP, int], *, asynchronous: bool) -> None:
        """Commit ``offsets`` (next offset to read per partition)."""
        if not offsets:
            return
        parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            if asynchronous:
                self.consumer.commit(offsets=parts, asynchronous=True)
            else:
                self.consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            # A failed commit loses nothing: the offsets are committed again later, or
            # the events are processed once more after a restart (at-least-once).
            log.warning("offset commit failed: %s", map_kafka_error(exc, "committing"))

    async def commit_sync(self, offsets: Mapping[TP, int]) -> None:
        """A synchronous commit on the consumer's thread (shutdown)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, lambda: self.commit(offsets, asynchronous=False))

    async def close(self) -> None:
        """Leave the group (the revoke hook runs once more) and close; idempotent."""
        if self._closed or self._consumer is None:
            self._closed = True
            self._thread.shutdown(wait=False)
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._consumer.close)
        self._thread.shutdown(wait=True)

    # --- rebalance callbacks: run on the consumer thread, inside consume()/close() ------

    def _call_on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError("Source.start() was not called")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.group_metadata = consumer.consumer_group_metadata()  # the new generation's
        self._call_on_loop(self._hooks[0]([(tp.topic, tp.partition) for tp in parts]))

    def _revoked(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        # A commit in the callback (the revoked partitions' last transaction) goes with
        # the generation the callback belongs to.
        self.group_metadata = consumer.consumer_group_metadata()
        offsets = self._call_on_loop(self._hooks[1]([(tp.topic, tp.partition) for tp in parts]))
        if offsets:
            # Commit on this thread, before the partitions are given up.
            self.commit(offsets, asynchronous=False)

    def _committed(self, error: object, parts: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (consumer thread, inside consume()): to the loop."""
        if self._loop is None or self._on_commit is None or self._loop.is_closed():
            return
        results = [
            ((tp.topic, tp.partition), tp.offset,
             None if error is None and tp.error is None else str(tp.error or error))
            for tp in parts
        ]  # fmt: skip
        self._loop.call_soon_threadsafe(self._on_commit, results)

    def _lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._call_on_loop(self._hooks[2]([(tp.topic, tp.partition) for tp in parts]))
