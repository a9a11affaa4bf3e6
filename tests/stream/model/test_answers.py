"""What a batch answer gives each of its events when parts of it go wrong."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from stream.model.batcher import Batcher
from stream.model.cache import TtlLru
from stream.model.errors import ModelOutputInvalid, ModelUnavailable
from tests.stream.model.fakes import EVENTS, TASK, Server, answer, client, completion, error, good

pytestmark = pytest.mark.asyncio


async def test_a_failing_lone_retry_fails_only_its_event() -> None:
    """15 of 16 items valid, the lone retry of the 16th meets an outage: the 15 are kept,
    only the 16th carries the (retriable) error."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 0:
            return completion(answer(*(good(e) for e in server.events(0) if e != "p")))
        return error(503, "server_error")

    server = Server(reply)
    events = [(chr(ord("a") + i), f"review {i}") for i in range(16)]
    answers = await client(server, max_attempts=1).ask(TASK, events)
    assert len(answers.outputs) == 15
    assert "p" not in answers.outputs
    assert isinstance(answers.errors["p"], ModelUnavailable)
    assert answers.usage.calls == 1


async def test_the_batcher_keeps_and_caches_the_valid_answers() -> None:
    """Through the batcher: 15 askers get their answer (and the cache keeps it), one gets
    the error, and asking the 15 again costs no request."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        eids = server.events(n)
        if len(eids) == 1 and n > 0:
            return error(503, "server_error")
        return completion(answer(*(good(e) for e in eids if e != "15")))

    server = Server(reply)
    cache: TtlLru[Any] = TtlLru(100, 60)
    batcher = Batcher(client(server, max_attempts=1), max_events=16, max_wait_s=0.05,
                      cache=cache)  # fmt: skip
    texts = [f"review {i}" for i in range(16)]
    results = await asyncio.gather(*(batcher.ask(TASK, t) for t in texts),
                                   return_exceptions=True)  # fmt: skip
    assert sum(not isinstance(r, BaseException) for r in results) == 15
    assert isinstance(results[15], ModelUnavailable)
    sent = len(server.requests)
    again = await asyncio.gather(*(batcher.ask(TASK, t) for t in texts[:15]))
    assert all(r.source == "cache" for r in again)
    assert len(server.requests) == sent


async def test_a_duplicated_id_is_asked_again() -> None:
    """Two items with one id: neither is trusted; that event is asked again alone, and
    the events whose ids came once are kept from the batch answer."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 0:
            return completion(answer(good("a"), good("b", "negative"), good("b", "positive"),
                                     good("c", "neutral")))  # fmt: skip
        return completion(answer(good("b", "negative")))

    server = Server(reply)
    answers = await client(server).ask(TASK, EVENTS)
    assert server.events(1) == ["b"]
    assert {k: v.label for k, v in answers.outputs.items()} == {  # type: ignore[attr-defined]
        "a": "positive", "b": "negative", "c": "neutral"}  # fmt: skip
    assert answers.errors == {}


async def test_a_duplicated_id_in_a_lone_answer_is_repaired() -> None:
    """A lone answer with its id twice is invalid: repaired, then a per-event error."""
    server = Server(lambda body, n: completion(answer(good("a"), good("a", "negative"))))
    answers = await client(server).ask(TASK, EVENTS[:2])
    assert "a" not in answers.outputs
    assert isinstance(answers.errors["a"], ModelOutputInvalid)
    assert "more than once" in str(answers.errors["a"])
