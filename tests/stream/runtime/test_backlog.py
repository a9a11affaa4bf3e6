"""Backlogs produced before start: every ordering mode drains them, none stalls."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from handlers.base import Handler, HandlerOptions, Result
from schemas.records import SourceRecord
from stream.config import KafkaSettings
from stream.runtime.processor import Processor
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce
from tests.stream.harness import all_handled, run_until, settings_for, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]


class MostlyInstant(Handler):
    """Answers at once, except every ``slow_every``-th event, which awaits a little (a
    cache miss, a new log template): the events behind it wait in their lane."""

    name = "mostly-instant"
    answers_now = True

    def __init__(self, slow_every: int) -> None:
        super().__init__(HandlerOptions())
        self.slow_every = slow_every

    def _slow(self, record: SourceRecord) -> bool:
        return int(orjson.loads(record.value or b"{}")["id"]) % self.slow_every == 0

    def try_now(self, record: SourceRecord) -> Result | None:
        return None if self._slow(record) else Result(record.value)

    async def handle(self, record: SourceRecord) -> Result:
        await asyncio.sleep(0.05)
        return Result(record.value)


@pytest.mark.parametrize("ordering", ["partition", "key", "unordered"])
async def test_a_backlog_behind_a_slow_event_drains_in_every_ordering(
    kafka: KafkaSettings, make_topic: TopicFactory, ordering: str
) -> None:
    """Hundreds of events queued in one lane behind an awaited one are started by a loop
    once it finishes, not by recursion: all 3,000 are enriched (the recursion stopped
    the lane for good at a few hundred)."""
    src, out = make_topic("in", 2), make_topic("out", 2)
    n = 3000
    produce(kafka.bootstrap_servers, src,
            [(f"k{i % 3}".encode(), orjson.dumps({"id": i})) for i in range(n)])  # fmt: skip
    route = {"name": "r", "input_topics": [src], "output_topic": out, "ordering": ordering}
    processor = Processor(settings_for(kafka, [route]), {"r": MostlyInstant(slow_every=700)})
    await run_until(processor, all_handled(n), limit_s=90)
    got = {source_of(r) for r in consume(kafka.bootstrap_servers, out, n, timeout=60)}
    assert len(got) == n
