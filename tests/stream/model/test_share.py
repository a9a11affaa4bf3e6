"""The account's limits split between replicas by their share of the partitions."""

from __future__ import annotations

import asyncio

import pytest

from stream.config import ModelSettings
from stream.model.buckets import RateBudget
from stream.model.client import ModelClient
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings
from tests.stream.model.fakes import TASK


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_share_scales_the_buckets() -> None:
    """A third of the partitions: a third of the account's rpm and tpm, and no more left
    than that at once; back to all of them, the rate grows without a burst."""
    clock = Clock()
    budget = RateBudget(rpm=600, tpm=90_000, clock=clock)
    budget.set_share(1 / 3)
    assert budget.requests.per_minute == pytest.approx(200)
    assert budget.tokens.per_minute == pytest.approx(30_000)
    assert budget.tokens.level == pytest.approx(30_000)
    budget.take(30_000)
    budget.set_share(1.0)
    assert budget.tokens.level == pytest.approx(0, abs=1)
    clock.now += 1
    assert budget.tokens.level == pytest.approx(1500)  # the account's whole rate


def test_headers_count_the_share_of_what_the_account_has_left() -> None:
    """Two replicas, each at half: the server's remaining is shared between them, and a
    limit below the configured one lowers the account's, one above it counts as configured."""
    budget = RateBudget(rpm=600, tpm=100_000)
    budget.set_share(0.5)
    budget.sync_headers({"x-ratelimit-remaining-tokens": "20000"})
    assert budget.tokens.level == pytest.approx(10_000, abs=5)
    budget.sync_headers({"x-ratelimit-limit-requests": "300", "x-ratelimit-limit-tokens": "x"})
    assert budget.requests.per_minute == pytest.approx(150)
    assert budget.tokens.per_minute == pytest.approx(50_000)
    budget.sync_headers({"x-ratelimit-limit-requests": "6000"})  # never above configured
    assert budget.requests.per_minute == pytest.approx(300)


def test_a_lowered_limit_rises_again_when_the_server_says_so() -> None:
    """A storm lowers the server's limit for a while; once its headers state the old
    limit again, the client sends at it again (it used to stay at the storm's for good)."""
    budget = RateBudget(rpm=600, tpm=100_000)
    budget.sync_headers({"x-ratelimit-limit-requests": "6", "x-ratelimit-limit-tokens": "8000"})
    assert budget.requests.per_minute == pytest.approx(6)
    assert budget.tokens.per_minute == pytest.approx(8000)
    budget.sync_headers({"x-ratelimit-limit-requests": "5000", "x-ratelimit-limit-tokens": "2e6"})
    assert budget.requests.per_minute == pytest.approx(600)
    assert budget.tokens.per_minute == pytest.approx(100_000)


def test_nothing_assigned_is_not_unlimited() -> None:
    """A share of 0 leaves a trickle, never the 'no limit' a 0 rpm means."""
    budget = RateBudget(rpm=600, tpm=100_000)
    budget.set_share(0)
    assert not budget.requests.unlimited
    assert budget.requests.per_minute <= 1


@pytest.mark.asyncio
async def test_three_replicas_at_a_third_each_get_no_429() -> None:
    """Three clients on one simulated account of 120 rpm, each told its share of 1/3,
    ask as fast as their budgets allow for three seconds: no 429 at all."""
    sim = SimulatorSettings(rpm=120, tpm=0, latency_median_ms=20, seed=3)
    async with running_simulator(sim) as url:
        settings = ModelSettings(api_key="sk-test", base_url=url, rpm=120, tpm=0)
        replicas = [ModelClient(settings) for _ in range(3)]
        for replica in replicas:
            replica.set_share(1 / 3)

        async def busy(replica: ModelClient, worker: int) -> None:
            for i in range(1000):
                await replica.ask(TASK, [(f"{worker}-{i}", f"review {worker} {i}")])

        tasks = [asyncio.create_task(busy(r, w)) for r in replicas for w in range(8)]
        await asyncio.sleep(3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        answered = sum(r.requests["ok"] for r in replicas)
        assert sum(r.rate_limited for r in replicas) == 0
        assert answered >= 120  # the account's full minute's allowance was used
        for replica in replicas:
            await replica.aclose()


@pytest.mark.asyncio
async def test_a_burst_admitted_on_a_full_budget_stops_at_the_first_429() -> None:
    """A replica starts with its budget full while the account is spent (others used
    it). Only the calls already holding a slot may go before the server's headers say
    so; the rest wait for the budget. (The budget used to admit the whole burst first:
    admitted calls queued for the two slots and went out one after another after the
    first 429 had set the budget to empty, each answered 429.)"""
    sim = SimulatorSettings(rpm=60, tpm=0, latency_median_ms=5, seed=3)
    async with running_simulator(sim) as url:
        other = ModelClient(ModelSettings(api_key="sk-test", base_url=url, rpm=0, tpm=0))
        for i in range(60):  # the account's minute, spent by someone else
            await other.ask(TASK, [(f"o{i}", f"other {i}")])
        await other.aclose()
        slots = {"min_concurrency": 2, "initial_concurrency": 2, "max_concurrency": 2}
        settings = ModelSettings(api_key="sk-test", base_url=url, rpm=60, tpm=0, **slots)
        replica = ModelClient(settings)
        assert replica.budget.requests.level >= 59  # it believes the minute is unspent
        tasks = [asyncio.create_task(replica.ask(TASK, [(f"{i}", f"review {i}")]))
                 for i in range(20)]  # fmt: skip
        await asyncio.sleep(1.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert replica.rate_limited <= 2  # the two calls that held the slots
        await replica.aclose()
