"""The model as handlers see it: budget first, then cache and batching, all metered."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from stream.config import Settings
from stream.model.errors import BudgetExhausted, BudgetPaused
from stream.model.service import ModelService
from tests.stream.model.fakes import TASK, Server, answer, completion, good

pytestmark = pytest.mark.asyncio


def service(server: Server, **budget: Any) -> ModelService:
    settings = Settings(
        model={"api_key": "sk-test", "base_url": "http://sim.test/v1", "batch_wait_ms": 1},
        budget=budget,
    )
    return ModelService(
        settings, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(server))
    )


def one_item_server() -> Server:
    server = Server(lambda b, n: completion(None))
    server.reply = lambda b, n: completion(answer(*(good(e) for e in server.events(n))),
                                           usage=(1_000_000, 100_000, 0))  # fmt: skip
    return server


async def test_answers_are_metered_per_route() -> None:
    """Each event's share of tokens and dollars lands on its handler and route; a cache
    hit is counted at no cost."""
    model = service(one_item_server())
    first = await model.ask(TASK, "great", route="reviews")
    assert first.usd == pytest.approx(0.20 + 0.125)
    again = await model.ask(TASK, "great", route="posts")
    assert again.source == "cache"
    assert again.usd == 0
    assert model.meter.tallies[("sentiment", "reviews")].usd == pytest.approx(0.325)
    assert model.meter.tallies[("sentiment", "posts")].events == 1


@pytest.mark.parametrize(("policy", "error"), [("stop", BudgetExhausted), ("pause", BudgetPaused),
                                               ("local-only", BudgetPaused)])  # fmt: skip
async def test_spent_budget_never_reaches_the_network(policy: str, error: type[Exception]) -> None:
    """Once the day's budget is spent: "stop" is fatal, "pause" and "local-only" wait
    (retriable), and no request is sent either way."""
    server = one_item_server()
    model = service(server, usd_per_day=0.30, policy=policy)
    await model.ask(TASK, "first", route="r")
    with pytest.raises(error) as caught:
        await model.ask(TASK, "second", route="r")
    assert len(server.requests) == 1
    assert model.should_pause() == (policy == "pause")
    if isinstance(caught.value, BudgetPaused):
        assert caught.value.retriable
        assert caught.value.local_only == (policy == "local-only")
    else:
        assert caught.value.fatal  # type: ignore[attr-defined]


async def test_model_without_a_price_is_refused_at_start() -> None:
    """A model the price table does not know cannot be metered: refused at start."""
    from stream.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match="no price"):
        ModelService(Settings(model={"model": "mystery-1", "api_key": "k"}))


async def test_every_request_is_metered_failed_events_included() -> None:
    """A batch of two where one event stays invalid after its lone retry and repair:
    all three requests' tokens reach the meter (not only the answered event's half),
    and the failed event's share lands on its own route."""
    import asyncio  # noqa: PLC0415

    from stream.model.errors import ModelOutputInvalid  # noqa: PLC0415

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        items = [good(e) for e in server.events(n) if e == "0"]
        return completion(answer(*items), usage=(1000, 100, 0))

    server = Server(reply)
    model = service(server)
    ok, bad = await asyncio.gather(model.ask(TASK, "fine", route="reviews"),
                                   model.ask(TASK, "odd", route="posts"),
                                   return_exceptions=True)  # fmt: skip
    assert isinstance(bad, ModelOutputInvalid)
    assert len(server.requests) == 3
    totals = model.meter.totals()
    assert (totals["prompt"], totals["completion"]) == (3000, 300)
    assert model.meter.tallies[("sentiment", "posts")].prompt == pytest.approx(1500)
    assert not isinstance(ok, BaseException)
    assert ok.usd == pytest.approx(model.meter.tallies[("sentiment", "reviews")].usd)
