"""Exactly-once: outputs and input offsets are committed in one Kafka transaction.

An event is done as soon as its outputs are staged; they are produced into the open
transaction ahead of its commit and committed together with the offsets of the
contiguous done prefix. The transaction commits in the background while the loop
consumes on; one lock keeps a commit, a rebalance and a lost assignment apart, so the
offsets of a partition are never committed without its outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine, Iterator
from time import perf_counter
from typing import Any

from schemas.records import OutRecord, SourceRecord
from stream.errors import ProducerFenced, ProducerStuck, TransactionAborted
from stream.kafka.sink import Sink
from stream.runtime.guarantee import Answer, Core
from stream.runtime.partition import TP, Partition
from stream.telemetry.stats import backoff

log = logging.getLogger("stream.runtime")

QUIET_S = 0.01  # outputs staged: how long a poll without records means quiet
ATTEMPTS = 5  # transactions in a row that may fail before the processor stops


class ExactlyOnce:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.sink = self._new_sink()
        self._lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        self._last_commit = time.monotonic()

    def _new_sink(self) -> Sink:
        settings = self.core.settings
        p = settings.processing
        return Sink(
            settings.kafka,
            transactional_id=self.transactional_id,
            transaction_timeout_ms=p.transaction_timeout_ms,
        )

    @property
    def transactional_id(self) -> str:
        """``processing.transactional_id``, else ``<group_id>-<hostname>-<pid>``: unique per
        process on a host, so that two replicas on one machine never fence each other, and
        the same after a restart in a container (its hostname and pid are)."""
        settings = self.core.settings
        return settings.processing.transactional_id or (
            f"{settings.kafka.group_id}-{socket.gethostname()}-{os.getpid()}"
        )

    # --- outputs: staged, the event is done at once --------------------------------------

    def settle(self, part: Partition, record: SourceRecord, outputs: list[OutRecord]) -> None:
        part.stage(record.offset, outputs)
        self.core.finished(part, [record.offset])
        self.core.advance(part, record)

    def settle_run(self, part: Partition, answers: Iterator[Answer]) -> None:
        topic, finished = part.route.settings.output_topic, []
        for record, value, headers in answers:
            part.stage(record.offset, [OutRecord(topic, record.key, value, tuple(headers))])
            finished.append(record.offset)
            self.core.advance(part, record)
        self.core.finished(part, finished)

    # --- the loop's cadence --------------------------------------------------------------

    @property
    def _committing(self) -> bool:
        return self._committer is not None and not self._committer.done()

    def _would_move(self) -> bool:
        return any(part.new_committable() is not None for part in self.core.parts.values())

    def _staged_enough(self) -> bool:
        """Staged events fill half an in-flight bound: time to commit."""
        p = self.core.settings.processing
        parts = self.core.parts.values()
        if sum(len(part.staged) for part in parts) >= p.max_in_flight // 2:
            return True
        return any(len(part.staged) >= p.max_in_flight_per_partition // 2 for part in parts)

    def poll_wait(self, default_s: float) -> float:
        # Staged outputs wait for the commit an empty poll triggers: poll briefly while
        # some could commit, so they do not wait long once the input stops.
        return QUIET_S if self._would_move() else default_s

    def room_coming(self) -> Coroutine[Any, Any, object] | None:
        committer = self._committer
        if committer is None or committer.done():
            return None
        return _finished(committer)

    async def after_poll(self, polled: bool) -> None:
        if polled:
            self._send_staged()
        if self._committing:
            return
        interval = self.core.settings.processing.commit_interval_ms / 1000
        due = time.monotonic() - self._last_commit >= interval
        if due or self._staged_enough() or (not polled and self._would_move()):
            # Commit before staged outputs fill the bounds rather than pause until the
            # timer, and when a poll comes back empty rather than keep them from readers.
            self._committer = asyncio.create_task(self._commit())
            self._committer.add_done_callback(self._committed)

    def _committed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.core.fail(task.exception() or RuntimeError("commit failed"))

    def _send_staged(self) -> None:
        """Produce the staged outputs of the committable prefix into the open transaction
        now, so that the commit has little left to send. Not while a commit runs: its
        transaction takes no more records."""
        if self._committing:
            return
        for part in self.core.parts.values():
            offset = part.new_committable()
            if offset is not None and part.unsent and part.unsent[0] < offset:
                self.sink.stage(part.take_unsent(offset))

    # --- commits -------------------------------------------------------------------------

    async def _commit(self) -> None:
        self._last_commit = time.monotonic()
        async with self._lock:
            await self._commit_locked()

    async def _commit_locked(self) -> None:
        core = self.core
        taken: dict[TP, int] = {}
        records: list[OutRecord] = []  # what the open transaction lacks
        for part in core.parts.values():
            offset = part.new_committable()
            if offset is not None:
                taken[part.tp] = offset
                records.extend(part.take_unsent(offset))
        if not taken:
            return
        started = perf_counter()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.sink.commit_transaction(records, taken, core.group_metadata())
                break
            except TransactionAborted as exc:
                core.stats.aborted_transactions += 1
                log.warning("transaction aborted (attempt %d): %s", attempt, exc)
            except ProducerFenced as exc:
                core.stats.aborted_transactions += 1
                await self._renew_sink(exc)
            # Whatever was produced into the failed transaction is gone: send it all again,
            # and commit offsets only of partitions whose outputs go with them.
            taken = {tp: offset for tp, offset in taken.items() if tp in core.parts}
            records = [out for tp, o in taken.items() for out in core.parts[tp].staged_below(o)]
            await asyncio.sleep(backoff(attempt))
        else:
            core.fail(TransactionAborted(f"{ATTEMPTS} transactions in a row failed; stopping"))
            return
        core.stats.transactions += 1
        took = perf_counter() - started
        for tp, offset in taken.items():
            owner = core.parts.get(tp)
            if owner is not None:
                events, outputs = owner.committed_to(offset)
                owner.route.counts.produced += outputs
                if events:
                    core.stages["produce"].observe_many(took, events)

    def on_commit(self, results: list[tuple[TP, int, str | None]]) -> None:
        return None  # offsets go with the transaction, never through the consumer

    async def release(self, parts: list[Partition]) -> dict[TP, int]:
        await self.close()
        await self._commit()
        return {}

    async def lost(self, parts: list[Partition], forget: Any) -> None:
        # Forgotten at once: the consumer's thread waits in its callback for this, and a
        # commit under way can be held up as long as the broker is away; the member must
        # rejoin meanwhile. That commit carries each partition's outputs with its offsets
        # (its retries only those of partitions still owned), so this cannot split them.
        forget(parts)
        cleanup = asyncio.create_task(self._abort_after_lost())
        cleanup.add_done_callback(self._committed)

    async def _abort_after_lost(self) -> None:
        # The open transaction may hold outputs of the lost partitions, staged ahead of a
        # commit: aborted once no commit runs (the lock), the others' outputs sent again.
        async with self._lock:
            try:
                await self.sink.abort()
            except ProducerFenced as exc:
                await self._renew_sink(exc)  # its transaction goes with it
            for part in self.core.parts.values():
                part.all_unsent()

    async def _renew_sink(self, exc: ProducerFenced) -> None:
        """Replace a producer that can no longer be used; the new one, with the same
        transactional id, fences the old and has the broker abort its transaction."""
        if isinstance(exc, ProducerStuck):
            log.warning("recreating the producer: %s", exc)
        else:
            log.warning(
                "producer fenced, recreating it: %s (a newer instance with transactional id "
                "%r took over: a restart, or another replica given the same "
                "processing.transactional_id)",
                exc,
                self.transactional_id,
            )
        await self.sink.close()
        self.sink = self._new_sink()
        await self.sink.start()

    async def close(self) -> None:
        if self._committer is not None:  # its failure, if any, went to fail() already
            with contextlib.suppress(Exception):
                await self._committer


async def _finished(task: asyncio.Task[None]) -> None:
    await asyncio.wait([task])
