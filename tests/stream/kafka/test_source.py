"""The consumer thread hands records to the loop as soon as there are any."""

from __future__ import annotations

import asyncio

import pytest

from stream.config import KafkaSettings
from stream.kafka.source import Source
from tests.conftest import TopicFactory
from tests.kafkautil import produce

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]

# Far longer than the test may take: a poll that waits it out fails the test.
LONG_WAIT_S = 600.0
GUARD_S = 60.0


async def _nothing(_tps: object) -> None:
    return None


async def _no_offsets(_tps: object) -> dict[tuple[str, int], int]:
    return {}


def _source(kafka: KafkaSettings, topic: str) -> Source:
    return Source(kafka, [topic], on_assign=_nothing, on_revoke=_no_offsets, on_lost=_nothing)


async def test_one_record_is_handed_over_without_waiting_for_more(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """One record and room for 500: the poll returns it when it is there instead of
    waiting for 499 more until its wait is over (a trickle used to wait out every poll's
    100 ms before the loop saw a record)."""
    topic = make_topic("handoff")
    produce(kafka.bootstrap_servers, topic, [(b"k", b"only")])
    source = _source(kafka, topic)
    await source.start()
    try:
        msgs = await asyncio.wait_for(source.poll(500, LONG_WAIT_S), GUARD_S)
        assert [m.value() for m in msgs] == [b"only"]
    finally:
        await source.close()


async def test_records_already_fetched_come_in_one_hand_off(
    kafka: KafkaSettings, make_topic: TopicFactory
) -> None:
    """The first record does not travel alone: those fetched behind it come with it, up
    to ``max_records``, and the rest in the next poll, in order."""
    topic = make_topic("handoff")
    produce(kafka.bootstrap_servers, topic, [(None, str(i).encode()) for i in range(300)])
    source = _source(kafka, topic)
    await source.start()
    try:
        first = await asyncio.wait_for(source.poll(200, LONG_WAIT_S), GUARD_S)
        got = [m.value() for m in first]
        polls = 1
        while len(got) < 300:
            more = await asyncio.wait_for(source.poll(200, LONG_WAIT_S), GUARD_S)
            got.extend(m.value() for m in more)
            polls += 1
        assert len(first) > 1
        assert len(first) <= 200
        assert got == [str(i).encode() for i in range(300)]
        assert polls < 300  # not one record per hand-off
    finally:
        await source.close()
