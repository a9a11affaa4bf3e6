"""The circuit breaker: a sustained outage pauses consumption instead of failing events.

Closed: calls flow; ``threshold`` retriable failures in a row open it. Open: calls are
refused (``ModelCircuitOpen``, retriable) and the processor pauses its partitions. After
``cooldown_s`` it half-opens and lets one probe through: success closes it, failure opens
it again with a doubled cooldown (up to ``max_cooldown_s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown_s: float = 5.0,
        max_cooldown_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._cooldown_s = cooldown_s
        self._probing = False
        self.opened = 0  # how many times it opened (a metric)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown_s:
            return "half-open"
        return "open"

    @property
    def is_open(self) -> bool:
        """True while consumption should pause (open, or half-open with a probe out)."""
        state = self.state
        return state == "open" or (state == "half-open" and self._probing)

    def retry_after(self) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def allow(self) -> bool:
        """May a call start now? In half-open state only one probe may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True
            return True
        return False

    def record(self, *, ok: bool) -> None:
        """The outcome of an allowed call; only retriable failures should count."""
        if ok:
            self._failures = 0
            self._opened_at = None
            self._probing = False
            self._cooldown_s = self.base_cooldown_s
            return
        self._failures += 1
        if self._probing:
            self._probing = False
            self._cooldown_s = min(self.max_cooldown_s, self._cooldown_s * 2)
            self._opened_at = self._clock()
        elif self._opened_at is None and self._failures >= self.threshold:
            self._opened_at = self._clock()
            self.opened += 1

    def forget_probe(self) -> None:
        """A probe ended without a verdict (cancelled): let another one try."""
        self._probing = False
