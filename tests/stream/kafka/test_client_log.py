"""The runtime's own Kafka clients log through ours while the broker is unreachable:
librdkafka's lines reach the handlers once per state, not a few dozen a second."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from stream.config import KafkaSettings
from stream.kafka.sink import Sink
from stream.kafka.source import Source
from stream.telemetry.logs import LIBRDKAFKA_LOGGER, RateLimitLibrdkafka

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def fresh_rate_limit() -> None:
    """A fresh limiter: states said by earlier tests in this process are not held back."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    for f in [f for f in logger.filters if isinstance(f, RateLimitLibrdkafka)]:
        logger.removeFilter(f)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def _unreachable() -> KafkaSettings:
    # A fast reconnect backoff so that librdkafka retries (and logs) many times a second.
    fast = {"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 20}
    return KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{_closed_port()}",
        group_id="unreachable",
        consumer_extra=fast,
        producer_extra=fast,
    )


def _librdkafka_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LIBRDKAFKA_LOGGER]


async def _nothing(_tps: object) -> None:
    return None


async def _no_offsets(_tps: object) -> dict[tuple[str, int], int]:
    return {}


async def test_consumer_log_is_ours_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    source = Source(
        _unreachable(), ["t"], on_assign=_nothing, on_revoke=_no_offsets, on_lost=_nothing
    )
    await source.start()
    try:
        for _ in range(6):  # consume() serves librdkafka's log queue
            await source.poll(10, 0.5)
    finally:
        await source.close()
    lines = _librdkafka_lines(caplog)
    assert any("Connection refused" in line for line in lines), caplog.text
    refused = [line for line in lines if "Connection refused" in line]
    # Dozens of attempts in 3 s with a 10 ms backoff; one line for the state.
    assert len(refused) <= 2, refused
    assert not any(
        "Connection refused" in r.getMessage()
        for r in caplog.records
        if r.name.startswith("stream.")
    )


async def test_producer_log_is_ours_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink = Sink(_unreachable())
    await sink.start()
    try:
        await asyncio.sleep(3)  # the producer's polling thread serves the log queue
    finally:
        await sink.close(wait_s=0.5)
    refused = [line for line in _librdkafka_lines(caplog) if "Connection refused" in line]
    assert refused, caplog.text
    assert len(refused) <= 2, refused
