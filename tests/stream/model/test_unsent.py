"""At a revoke, asks that only wait for budget can be given up without harming others."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from stream.config import ModelSettings
from stream.model.batcher import Batcher
from stream.model.client import ModelClient
from tests.stream.model.fakes import TASK, Server, answer, client, completion, good

pytestmark = pytest.mark.asyncio


def echo() -> Server:
    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        return completion(answer(*(good(e) for e in server.events(n))))

    server = Server(reply)
    return server


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def test_cancelled_askers_leave_a_batch_waiting_for_budget() -> None:
    """A batch of three waits for the budget; two of its askers are listed as unsent
    and cancelled: the request goes out with the third alone, which gets its answer."""
    server = echo()
    model = client(server, rpm=60)
    model.budget.requests.take(60)  # no request for a second
    batcher = Batcher(model, max_events=3, max_wait_s=0.001)
    askers = [asyncio.create_task(batcher.ask(TASK, f"review {i}")) for i in range(3)]
    await settle()
    assert batcher.unsent_tasks() == set(askers)
    assert server.requests == []
    askers[0].cancel()
    askers[2].cancel()
    reply = await asyncio.wait_for(askers[1], timeout=3)
    assert reply.source == "model"
    assert len(server.requests) == 1
    assert server.events(0) == ["1"]
    assert reply.calls == 1  # the whole request is this event's
    assert all(a.cancelled() for a in (askers[0], askers[2]))
    assert batcher.unsent_tasks() == set()


async def test_a_batch_whose_askers_all_left_sends_nothing() -> None:
    """Every asker gone before the budget admits the request: nothing is sent, and the
    request's budget is given back."""
    server = echo()
    model = client(server, rpm=60)
    model.budget.requests.take(60)
    batcher = Batcher(model, max_events=2, max_wait_s=0.001)
    askers = [asyncio.create_task(batcher.ask(TASK, f"r{i}")) for i in range(2)]
    await settle()
    for asker in askers:
        asker.cancel()
    await asyncio.sleep(1.2)
    assert server.requests == []
    assert model.budget.requests.level >= 1  # admitted, then refunded
    later = await batcher.ask(TASK, "r0")  # the same text is asked afresh
    assert later.source == "model"


async def test_an_asker_cancelled_in_the_batch_window_is_taken_out() -> None:
    """Cancelled while the batch still gathers: its event never joins the request."""
    server = echo()
    batcher = Batcher(client(server), max_events=16, max_wait_s=0.2, idle_s=0)
    first = asyncio.create_task(batcher.ask(TASK, "a"))
    second = asyncio.create_task(batcher.ask(TASK, "b"))
    await settle()
    assert batcher.unsent_tasks() == {first, second}
    first.cancel()
    await asyncio.wait_for(second, timeout=2)
    assert len(server.requests) == 1
    assert len(server.events(0)) == 1


async def test_sent_asks_are_not_listed_and_sharers_keep_an_event() -> None:
    """A sent request's askers are not unsent; an event two askers wait for stays in its
    batch when only one of them is cancelled."""

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(0.5)
        return server(request)

    server = echo()
    settings = ModelSettings(api_key="sk-test", base_url="http://sim.test/v1")
    model = ModelClient(
        settings, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(slow))
    )
    batcher = Batcher(model, max_events=16, max_wait_s=0.3, idle_s=0)
    owner = asyncio.create_task(batcher.ask(TASK, "same"))
    sharer = asyncio.create_task(batcher.ask(TASK, "same"))
    await settle()
    assert batcher.unsent_tasks() == {owner, sharer}
    owner.cancel()
    await asyncio.sleep(0.4)  # the window closed: the request is on its way
    assert batcher.unsent_tasks() == set()
    reply = await asyncio.wait_for(sharer, timeout=3)
    assert reply.output.label == "positive"  # type: ignore[attr-defined]
    assert len(server.requests) == 1
