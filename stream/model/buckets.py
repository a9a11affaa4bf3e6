"""Requests-per-minute and tokens-per-minute budgets that see the whole process.

A token bucket refills continuously at ``per_minute / 60`` per second up to one minute's
worth. Requests wait for the budget first come, first served (``RateBudget.acquire``), so
a large request is never overtaken for ever by small ones; they take their estimate
before they start and give back the difference when the response's ``usage`` is known.

The configured limits are the account's. A replica of a consumer group takes the share
``set_share`` gives it (its part of the input partitions); the server's
``x-ratelimit-remaining-*`` headers pull the bucket down to this replica's share of what
the account has left, and ``x-ratelimit-limit-*`` sets the account's limit (never above
the configured one), so replicas sharing an account stay under its limit together and
speed up again when a lowered limit is lifted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping

Clock = Callable[[], float]
# The head of the queue looks again at least this often: usage given back meanwhile may
# let it go sooner than the refill alone would.
MAX_SLEEP_S = 0.25


class TokenBucket:
    """``per_minute`` units a minute; 0 means unlimited."""

    def __init__(self, per_minute: float, clock: Clock = time.monotonic) -> None:
        self.configured = per_minute  # the account's limit as configured
        self.account = per_minute  # as the server states it now, never above configured
        self.share = 1.0
        self.per_minute = per_minute
        self._clock = clock
        self._level = per_minute
        self._stamp = clock()

    def set_share(self, fraction: float) -> None:
        """This replica's part of the account's limit. A smaller share caps what is
        left at once; a larger one refills faster but bursts nothing."""
        self.share = min(1.0, max(0.0, fraction))
        self._rescale()

    def set_account(self, limit: float) -> None:
        """The account's limit as the server states it, capped at the configured one. It
        follows the server both ways: a limit lowered for a while (a storm of 429s) is
        raised again when the server says so, or the client would stay slow for good."""
        if self.unlimited or limit <= 0:
            return
        account = min(limit, self.configured)
        if account != self.account:
            self.account = account
            self._rescale()

    def _rescale(self) -> None:
        if self.account <= 0:
            return  # unlimited stays unlimited
        self._refill()
        # Never 0, which means unlimited: a replica with nothing assigned asks little.
        self.per_minute = max(1.0, self.account * self.share)
        self._level = min(self._level, self.per_minute)

    @property
    def unlimited(self) -> bool:
        return self.per_minute <= 0

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.per_minute, self._level + (now - self._stamp) * self.per_minute / 60)
        self._stamp = now

    @property
    def level(self) -> float:
        self._refill()
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 if it is now). More than a minute's
        worth waits for a full bucket, so one huge request cannot starve forever."""
        if self.unlimited:
            return 0.0
        need = min(amount, self.per_minute) - self.level
        return 0.0 if need <= 0 else need * 60 / self.per_minute

    def take(self, amount: float) -> None:
        if not self.unlimited:
            self._refill()
            self._level -= amount

    def give_back(self, amount: float) -> None:
        """Return an over-estimate (negative: take the under-estimate after the fact)."""
        if not self.unlimited:
            self._refill()
            self._level = min(self.per_minute, self._level + amount)

    def sync(self, remaining: float) -> None:
        """Believe the server: never think more is left than this replica's share of
        what it says the account has left. Its
        ``x-ratelimit-reset-*`` is the time until its bucket is *full* again, which a
        continuous refill already implies, so only the remaining count matters: an empty
        bucket lets the next call go after one refill step, not after the full reset."""
        if self.unlimited:
            return
        self._refill()
        self._level = min(self._level, remaining * self.share)


class RateBudget:
    """The pair of buckets the provider enforces: requests and tokens per minute."""

    def __init__(self, rpm: float, tpm: float, clock: Clock = time.monotonic) -> None:
        self.requests = TokenBucket(rpm, clock)
        self.tokens = TokenBucket(tpm, clock)
        self._clock = clock
        self._held_until = 0.0
        self._queue: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for the budget now."""
        return len(self._queue)

    def set_share(self, fraction: float) -> None:
        """Scale both buckets to this replica's part of the account's limits (e.g. its
        input partitions over all partitions of its routes' topics, on every rebalance)."""
        self.requests.set_share(fraction)
        self.tokens.set_share(fraction)

    async def acquire(self, tokens: float) -> None:
        """Wait until one request of ``tokens`` fits, first come, first served, and take
        it. A cancelled waiter leaves the queue and takes nothing."""
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(ticket)
        try:
            if self._queue[0] is not ticket:
                await ticket  # woken when every request queued before it has gone
            while (wait := self.wait_for(tokens)) > 0:  # noqa: ASYNC110 - time-based refill
                await asyncio.sleep(min(wait, MAX_SLEEP_S))
            self.take(tokens)
        finally:
            head = self._queue[0] is ticket
            self._queue.remove(ticket)
            if head and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)

    def wait_for(self, tokens: float) -> float:
        held = self._held_until - self._clock()
        return max(held, self.requests.wait_for(1), self.tokens.wait_for(tokens))

    def hold(self, seconds: float) -> None:
        """The server answered 429 with a retry-after: no call starts for ``seconds``,
        not only the refused one, so one refusal does not become a burst of them."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def take(self, tokens: float) -> None:
        self.requests.take(1)
        self.tokens.take(tokens)

    def refund(self, tokens: float) -> None:
        """A request that was admitted but never sent gives its request and tokens back."""
        self.requests.give_back(1)
        self.tokens.give_back(tokens)

    def settle(self, estimated: float, used: float) -> None:
        """Correct a call's token estimate with its real usage."""
        self.tokens.give_back(estimated - used)

    def sync_headers(self, headers: Mapping[str, str]) -> None:
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit is not None:
                bucket.set_account(limit)
            left = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if left is not None:
                bucket.sync(left)


def _number(header: str | None) -> float | None:
    if header is None:
        return None
    try:
        return float(header)
    except ValueError:
        return None
