"""Requests-per-minute and tokens-per-minute budgets that see the whole process.

A token bucket refills continuously at ``per_minute / 60`` per second up to one minute's
worth. Calls take their estimate before they start, give back the difference when the
response's ``usage`` is known, and the server's ``x-ratelimit-remaining-*`` headers
pull the bucket down to what the server says is left, so several replicas sharing one
account stay under its limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

Clock = Callable[[], float]


class TokenBucket:
    """``per_minute`` units a minute; 0 means unlimited."""

    def __init__(self, per_minute: float, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._level = per_minute
        self._stamp = clock()

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
        """Believe the server: never think more is left than it says. Its
        ``x-ratelimit-reset-*`` is the time until its bucket is *full* again, which a
        continuous refill already implies, so only the remaining count matters: an empty
        bucket lets the next call go after one refill step, not after the full reset."""
        if self.unlimited:
            return
        self._refill()
        self._level = min(self._level, remaining)


class RateBudget:
    """The pair of buckets the provider enforces: requests and tokens per minute."""

    def __init__(self, rpm: float, tpm: float, clock: Clock = time.monotonic) -> None:
        self.requests = TokenBucket(rpm, clock)
        self.tokens = TokenBucket(tpm, clock)
        self._clock = clock
        self._held_until = 0.0

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

    def settle(self, estimated: float, used: float) -> None:
        """Correct a call's token estimate with its real usage."""
        self.tokens.give_back(estimated - used)

    def sync_headers(self, headers: Mapping[str, str]) -> None:
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            remaining = headers.get(f"x-ratelimit-remaining-{kind}")
            if remaining is None:
                continue
            try:
                left = float(remaining)
            except ValueError:
                continue
            bucket.sync(left)
