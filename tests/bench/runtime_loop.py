"""sluicegate's ``Processor`` doing the same copy, with a handler that costs nothing, so
that what is measured is the runtime itself: dispatch, offsets, delivery, commits."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from handlers.base import Handler, HandlerOptions, Result
from schemas.records import SourceRecord
from stream.config import Settings
from stream.runtime.processor import Processor
from stream.telemetry.stats import Stats
from tests.bench.workload import BrokenRun, fresh_name

ROUTE = "bench"
WATCH_S = 0.005  # how often the clock checks the processor's counters


class Instant(Handler):
    """Returns the event unchanged, at once: the cheapest handler there can be."""

    name = "instant"
    answers_now = True

    def __init__(self) -> None:
        super().__init__(HandlerOptions())

    def try_now(self, record: SourceRecord) -> Result | None:
        return Result(record.value)

    async def handle(self, record: SourceRecord) -> Result:
        return Result(record.value)


def bench_settings(
    bootstrap: str, source: str, output: str, *, exactly_once: bool, processing: dict[str, Any]
) -> Settings:
    """A user's settings: the defaults, one unordered route, metrics off, plus ``processing``
    overrides (which the report lists)."""
    guarantee: dict[str, Any] = (
        {"guarantee": "exactly-once", "transactional_id": f"bench-{uuid.uuid4().hex}"}
        if exactly_once
        else {}
    )
    route = {
        "name": ROUTE,
        "input_topics": [source],
        "output_topic": output,
        "handler": Instant.name,
        "ordering": "unordered",
    }
    return Settings(
        kafka={"bootstrap_servers": bootstrap, "group_id": fresh_name("group")},
        routes=[route],
        processing={**processing, **guarantee},
        metrics={"enabled": False},
    )


async def run_sluicegate(settings: Settings, n: int, limit_s: float) -> tuple[float, Stats]:
    """Run a ``Processor`` over ``n`` events; return the events per second from the first
    consumed event until ``n`` outputs are produced (acknowledged, or committed in a
    transaction) and no event is held in memory, and the processor's counters."""
    variant = f"sluicegate {settings.processing.guarantee}"
    processor = Processor(settings, {ROUTE: Instant()})
    task = asyncio.create_task(processor.run())
    first: float | None = None
    last: float | None = None
    try:
        deadline = time.monotonic() + limit_s
        while True:
            now = time.monotonic()
            stats = processor.stats
            if first is None and stats.consumed > 0:
                first = now
            if stats.produced >= n and all(p.load == 0 for p in processor.partitions.values()):
                last = now
                break
            if task.done():
                raise BrokenRun(f"{variant}: the processor stopped early: {stats}")
            if now > deadline:
                raise BrokenRun(f"{variant}: not done within {limit_s:.0f}s: {stats}")
            await asyncio.sleep(WATCH_S)
    finally:
        processor.stop()
        await task
    stats = processor.stats
    if stats.consumed != n or stats.produced != n or stats.dead_lettered:
        raise BrokenRun(f"{variant}: expected {n} consumed and produced, got {stats}")
    if first is None or last is None:  # unreachable: the loop only ends with both set
        raise BrokenRun(f"{variant}: the clock did not run")
    return n / (last - first), stats
