"""Micro-batching and the response cache, through the real SDK and a fake server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from stream.model.batcher import Batcher, batch_size, output_estimate
from stream.model.cache import TtlLru
from stream.model.errors import ModelOutputInvalid, ModelUnavailable
from tests.stream.model.fakes import TASK, Server, answer, client, completion, error, good

pytestmark = pytest.mark.asyncio


def echo_labels(server: Server) -> Server:
    """A server that answers every event of a request with a valid item."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        return completion(answer(*(good(e) for e in server.events(n))), usage=(1000, 100, 0))

    server.reply = reply
    return server


async def test_concurrent_asks_share_a_request() -> None:
    """Twenty concurrent asks go out as two requests of at most ten events."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_events=10, max_wait_s=0.05)
    replies = await asyncio.gather(*(batcher.ask(TASK, f"review {i}") for i in range(20)))
    assert len(server.requests) == 2
    assert sorted(len(server.events(n)) for n in range(2)) == [10, 10]
    assert all(r.source == "model" for r in replies)
    assert sum(r.prompt_tokens for r in replies) == pytest.approx(2000)


async def test_a_batch_grows_while_the_rate_budget_holds_requests_back() -> None:
    """With the request budget spent, asks trickling in join the waiting batch instead of
    each batch closing after max_wait_s and queueing part-empty behind the budget."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    model = client(server, rpm=30)  # one request every 2 s once the minute's are spent
    model.budget.requests.take(30)
    batcher = Batcher(model, max_events=10, max_wait_s=0.01)

    async def trickle(i: int) -> None:
        await asyncio.sleep(0.03 * i)
        await batcher.ask(TASK, f"review {i}")

    await asyncio.gather(*(trickle(i) for i in range(8)))
    assert [len(server.events(n)) for n in range(len(server.requests))] == [8]


async def test_token_limit_splits_batches() -> None:
    """A batch never holds more event text than max_tokens."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_events=100, max_tokens=30, max_wait_s=0.05)
    await asyncio.gather(*(batcher.ask(TASK, f"{i}" + "x" * 39) for i in range(6)))
    assert [len(server.events(n)) for n in range(len(server.requests))] == [3, 3]


async def test_batching_off_sends_each_alone() -> None:
    """With batching switched off for a route, each event is its own request."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_wait_s=0.05)
    await asyncio.gather(*(batcher.ask(TASK, f"r{i}", batch=False) for i in range(3)))
    assert len(server.requests) == 3


async def test_cache_answers_identical_content_for_free() -> None:
    """Identical content (whitespace aside) is answered from the cache, marked so,
    with no tokens; content in flight is shared, not asked twice."""
    server = echo_labels(Server(lambda b, n: completion(None)))
    batcher = Batcher(client(server), max_wait_s=0.01, cache=TtlLru(100, 60))
    first, twin = await asyncio.gather(batcher.ask(TASK, "Great  product"),
                                       batcher.ask(TASK, "Great  product"))  # fmt: skip
    assert len(server.events(0)) == 1
    again = await batcher.ask(TASK, "  Great product ")
    assert len(server.requests) == 1
    assert again.source == "cache"
    assert again.prompt_tokens == again.completion_tokens == 0
    assert again.output == first.output == twin.output


async def test_per_event_errors_reach_only_their_asker() -> None:
    """An event whose answer stays invalid fails alone; its batch mates succeed."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        items = [good(e) for e in server.events(n) if e != "1" or n > 0]
        if n > 0:
            items = [{"id": "0", "label": "furious", "confidence": 1}]
        return completion(answer(*items))

    server = Server(reply)
    batcher = Batcher(client(server), max_wait_s=0.05)
    results = await asyncio.gather(batcher.ask(TASK, "fine"), batcher.ask(TASK, "odd"),
                                   return_exceptions=True)  # fmt: skip
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], ModelOutputInvalid)


async def test_outage_reaches_every_asker() -> None:
    """When the request itself fails, every event of the batch gets the error."""
    server = Server(lambda b, n: error(503))
    batcher = Batcher(client(server, max_attempts=1), max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.ask(TASK, f"r{i}") for i in range(3)),
                                   return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, ModelUnavailable) for r in results)
    assert len(server.requests) == 1


async def test_a_backlog_waiting_for_budget_is_batched_at_the_size_learned_meanwhile() -> None:
    """A backlog arrives while the request budget is spent. The first guess of an
    answer's size allows two events a request; the answers show they are far smaller.
    The batches are made as the budget admits them, so the later ones are larger (they
    were all cut at two, before any answer was known, and went out so for minutes)."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        events = server.events(n)
        return completion(answer(*(good(e) for e in events)), usage=(100, 5 * len(events), 0))

    server = Server(reply)
    guess = output_estimate(TASK)
    completion_tokens = int(2.5 * guess / 0.8)  # room for two items of the first guess
    assert batch_size(16, completion_tokens, guess) == 2
    model = client(server, rpm=1200, max_completion_tokens=completion_tokens)
    model.budget.requests.take(1200)  # one request every 50 ms from now
    batcher = Batcher(model, max_events=16, max_wait_s=0.001)
    replies = await asyncio.gather(*(batcher.ask(TASK, f"review {i}") for i in range(60)))
    sizes = [len(server.events(n)) for n in range(len(server.requests))]
    assert all(r.source == "model" for r in replies)
    assert sum(sizes) == 60
    assert sizes[0] == 2
    assert max(sizes) > 2
    assert len(sizes) < 30
