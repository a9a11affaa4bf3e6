"""Rate budgets, adaptive concurrency and the breaker, driven by a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from stream.model.breaker import CircuitBreaker
from stream.model.buckets import RateBudget, TokenBucket
from stream.model.concurrency import AimdLimit


def state_of(breaker: CircuitBreaker) -> str:
    return breaker.state  # a fresh read each time (mypy would narrow a property)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_continuously() -> None:
    """60 a minute is one a second: empty now, one back after a second."""
    clock = Clock()
    bucket = TokenBucket(60, clock)
    bucket.take(60)
    assert bucket.wait_for(1) == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.wait_for(1) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.wait_for(1) == 0.0


def test_estimates_are_settled_with_usage() -> None:
    """An over-estimate is given back once the response's usage is known."""
    clock = Clock()
    budget = RateBudget(rpm=100, tpm=1000, clock=clock)
    budget.take(600)
    assert budget.tokens.level == pytest.approx(400)
    budget.settle(estimated=600, used=250)
    assert budget.tokens.level == pytest.approx(750)


def test_headers_pull_the_budget_down() -> None:
    """The server's remaining count wins when it is lower (other replicas spend too),
    and an exhausted bucket refills at the configured rate."""
    clock = Clock()
    budget = RateBudget(rpm=600, tpm=100_000, clock=clock)
    budget.sync_headers({"x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "1s"})
    assert budget.tokens.level == pytest.approx(5000)
    # Empty now: the reset header is the time until the server's bucket is full again,
    # so the next request may go after one refill step (60 s / 600), not after 20 s.
    budget.sync_headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"}
    )
    assert budget.wait_for(10) == pytest.approx(0.1)
    clock.now += 0.1
    assert budget.wait_for(10) == 0.0


def test_a_429_holds_every_call_back() -> None:
    """After a 429's retry-after, no call may start, whatever the buckets hold; a later,
    shorter hold does not cut an earlier one short."""
    clock = Clock()
    budget = RateBudget(rpm=600, tpm=100_000, clock=clock)
    budget.hold(2.0)
    budget.hold(0.5)
    assert budget.wait_for(10) == pytest.approx(2.0)
    clock.now += 2.0
    assert budget.wait_for(10) == 0.0


def test_unlimited_bucket_never_waits() -> None:
    """A limit of 0 means no limit."""
    bucket = TokenBucket(0)
    bucket.take(10**9)
    assert bucket.wait_for(10**9) == 0.0


@pytest.mark.asyncio
async def test_aimd_grows_on_success_and_shrinks_on_overload() -> None:
    """Successes raise the limit slowly, a 429 cuts it, within floor and ceiling."""
    limit = AimdLimit(floor=2, ceiling=10, initial=4)
    for _ in range(40):
        await limit.acquire()
        limit.release(latency=0.1)
    assert 6 < limit.limit <= 10
    before = limit.limit
    await limit.acquire()
    limit.release(overloaded=True)
    assert limit.limit == pytest.approx(before * 0.7)
    for _ in range(20):
        await limit.acquire()
        limit.release(overloaded=True)
    assert limit.limit == 2


@pytest.mark.asyncio
async def test_aimd_bounds_concurrency_and_shrinks_on_slow_calls() -> None:
    """No more calls run than the limit allows; a call far slower than the best seen
    counts as overload."""
    limit = AimdLimit(floor=1, ceiling=3, initial=3)
    running = 0
    peak = 0

    async def call(latency: float) -> None:
        nonlocal running, peak
        await limit.acquire()
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        limit.release(latency=latency)

    await asyncio.gather(*(call(0.1) for _ in range(30)))
    assert peak <= 3
    before = limit.limit
    await call(1.0)
    assert limit.limit < before


@pytest.mark.asyncio
async def test_aimd_cancelled_waiter_frees_its_place() -> None:
    """A waiter cancelled in the queue does not leak a slot."""
    limit = AimdLimit(floor=1, ceiling=1, initial=1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    assert limit.in_flight == 0
    await asyncio.wait_for(limit.acquire(), 1)


def test_breaker_opens_probes_and_closes() -> None:
    """Five failures open it; after the cooldown one probe goes through; success closes."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, cooldown_s=10, clock=clock)
    for _ in range(4):
        breaker.record(ok=False)
    assert state_of(breaker) == "closed"
    breaker.record(ok=False)
    assert state_of(breaker) == "open"
    assert breaker.is_open
    assert not breaker.allow()
    assert breaker.retry_after() == pytest.approx(10)
    clock.now += 10
    assert state_of(breaker) == "half-open"
    assert breaker.allow()
    assert not breaker.allow(), "only one probe at a time"
    breaker.record(ok=True)
    assert state_of(breaker) == "closed"
    assert not breaker.is_open


def test_failed_probe_doubles_the_cooldown() -> None:
    """A failed probe reopens the breaker for twice as long."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown_s=5, max_cooldown_s=15, clock=clock)
    breaker.record(ok=False)
    clock.now += 5
    assert breaker.allow()
    breaker.record(ok=False)
    assert breaker.retry_after() == pytest.approx(10)
    clock.now += 10
    assert breaker.allow()
    breaker.record(ok=False)
    assert breaker.retry_after() == pytest.approx(15)
