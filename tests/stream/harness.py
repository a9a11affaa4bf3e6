"""Run a real Processor in-process against the test broker until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from stream.config import KafkaSettings, Settings
from stream.kafka.headers import SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, header
from stream.runtime.processor import Processor
from tests.kafkautil import Record


def settings_for(kafka: KafkaSettings, routes: list[dict[str, Any]], **sections: Any) -> Settings:
    """Settings for the test broker; quick commits and a short shutdown by default."""
    processing = {
        "commit_interval_ms": 200,
        "shutdown_timeout_s": 10,
        **sections.pop("processing", {}),
    }
    return Settings(
        kafka=kafka,
        routes=routes,
        processing=processing,
        metrics={"enabled": False},
        **sections,
    )


async def run_until(
    processor: Processor,
    done: Callable[[Processor], bool],
    limit_s: float = 60.0,
    during: Callable[[Processor], None] | None = None,
) -> None:
    """Run ``processor`` until ``done(processor)``, then stop it gracefully and wait.

    ``during`` is called every 20 ms (to sample load, memory, ...). Raises what the
    processor raised; fails on timeout with the processor's stats.
    """
    task = asyncio.create_task(processor.run())
    deadline = time.monotonic() + limit_s
    try:
        while not done(processor):
            if task.done():
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"not done within {limit_s}s: {processor.stats}")
            if during is not None:
                during(processor)
            await asyncio.sleep(0.02)
    finally:
        processor.stop()
        await task


def source_of(record: Record) -> tuple[str, int, int]:
    """(topic, partition, offset) of the input an output came from, from its headers."""
    topic = header(record.headers, SOURCE_TOPIC)
    partition = header(record.headers, SOURCE_PARTITION)
    offset = header(record.headers, SOURCE_OFFSET)
    assert topic is not None
    assert partition is not None
    assert offset is not None
    return topic.decode(), int(partition), int(offset)


def all_handled(expected: int) -> Callable[[Processor], bool]:
    """Done when ``expected`` events were consumed and none is left in memory."""

    def check(p: Processor) -> bool:
        return (
            p.stats.consumed >= expected
            and all(part.load == 0 for part in p.partitions.values())
            and p.stats.produced + p.stats.dead_lettered >= expected
        )

    return check
