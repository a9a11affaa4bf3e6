"""The batch window closes as soon as waiting no longer adds events."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream.model.batcher import Batcher
from tests.stream.model.fakes import TASK, Server, client, completion
from tests.stream.model.test_batcher import echo_labels

pytestmark = pytest.mark.asyncio


async def test_a_burst_goes_out_once_no_more_asks_come() -> None:
    """Five asks at once, a window of up to 2 s: the request leaves after the idle gap,
    with all five, not when the window would have ended."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_events=16, max_wait_s=2.0, idle_s=0.01)
    started = time.monotonic()
    await asyncio.gather(*(batcher.ask(TASK, f"review {i}") for i in range(5)))
    assert time.monotonic() - started < 1.0  # far below the 2 s window
    assert [len(server.events(n)) for n in range(len(server.requests))] == [5]


async def test_asks_arriving_within_the_gap_keep_the_window_open() -> None:
    """Asks 5 ms apart with an idle gap of 50 ms all join one batch."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_events=16, max_wait_s=2.0, idle_s=0.05)

    async def trickle(i: int) -> None:
        await asyncio.sleep(0.005 * i)
        await batcher.ask(TASK, f"review {i}")

    await asyncio.gather(*(trickle(i) for i in range(6)))
    assert [len(server.events(n)) for n in range(len(server.requests))] == [6]


async def test_no_idle_gap_waits_the_whole_window() -> None:
    """idle 0 keeps the fixed window: asks 30 ms apart within 200 ms share a request."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_events=16, max_wait_s=0.2, idle_s=0)

    async def trickle(i: int) -> None:
        await asyncio.sleep(0.03 * i)
        await batcher.ask(TASK, f"review {i}")

    await asyncio.gather(*(trickle(i) for i in range(4)))
    assert [len(server.events(n)) for n in range(len(server.requests))] == [4]
