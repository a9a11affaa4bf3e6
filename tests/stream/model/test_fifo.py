"""The rate budget serves waiting requests first come, first served."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from stream.model.buckets import RateBudget
from stream.model.tokens import estimate_messages
from tests.stream.model.fakes import TASK, Server, answer, client, completion, good

pytestmark = pytest.mark.asyncio


def billing_server() -> Server:
    """Answers every event, reporting as prompt tokens what the client estimated, so a
    request spends what it reserved."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        used = estimate_messages(body["messages"])
        return completion(answer(*(good(e) for e in server.events(n))), usage=(used, 1, 0))

    server = Server(reply)
    return server


async def test_a_large_request_is_not_starved_by_small_ones() -> None:
    """Eight workers keep asking small requests while a large one (1.5 s of refill)
    waits: it is admitted once the requests queued before it are, not never."""
    model = client(billing_server(), tpm=120_000, rpm=0, max_completion_tokens=16)
    model.budget.tokens.take(120_000)  # the minute's allowance is spent
    admitted_small = 0

    async def small_worker() -> None:
        nonlocal admitted_small
        while True:
            await model.ask(TASK, [("s", "x" * 1000)])  # about 270 tokens
            admitted_small += 1

    workers = [asyncio.create_task(small_worker()) for _ in range(8)]
    await asyncio.sleep(0.2)
    before = admitted_small
    try:
        big = await asyncio.wait_for(model.ask(TASK, [("b", "y" * 12_000)]), timeout=8)
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert set(big.outputs) == {"b"}
    # Only the workers' asks already queued may have gone first (one each, plus slack).
    assert admitted_small - before <= 10


async def test_cancelled_waiters_leave_the_queue() -> None:
    """A waiter cancelled in the queue does not block the ones behind it."""
    budget = RateBudget(rpm=0, tpm=60_000)
    budget.tokens.take(60_000)
    first = asyncio.create_task(budget.acquire(30_000))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(budget.acquire(100))
    await asyncio.sleep(0.01)
    assert budget.queued == 2
    first.cancel()
    await asyncio.wait_for(second, timeout=1)
    assert budget.queued == 0
