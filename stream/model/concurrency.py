"""Adaptive concurrency: as many calls in flight as the endpoint absorbs, no more.

AIMD, as TCP does: every success adds ``1 / limit`` (about one more slot per round of
calls); a 429, a timeout, or latency far above the median of the recent calls cuts the
limit by ``backoff``. The limit stays between ``floor`` and ``ceiling``.

The median, not the best latency seen: answer times spread widely (they grow with the
answer's length, and vary from call to call anyway), and against the fastest call ever
seen about half of all normal calls would look slow and hold the limit near the floor.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque


class AimdLimit:
    def __init__(
        self,
        *,
        floor: int = 1,
        ceiling: int = 64,
        initial: int = 8,
        backoff: float = 0.7,
        latency_tolerance: float = 3.0,
        latency_window: int = 100,
    ) -> None:
        self.floor, self.ceiling = floor, ceiling
        self.limit = float(min(max(initial, floor), ceiling))
        self.backoff = backoff
        self.latency_tolerance = latency_tolerance
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._latencies: deque[float] = deque(maxlen=latency_window)  # recent successes

    async def acquire(self) -> None:
        """Wait for a free slot (first come, first served)."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # the slot was handed over just as we were cancelled
                self._wake()
            else:
                self._waiters.remove(waiter)
            raise

    def release(self, *, overloaded: bool = False, latency: float | None = None) -> None:
        """Free a slot and adapt: ``overloaded`` for 429s and timeouts."""
        self.in_flight -= 1
        slow = False
        if latency is not None and not overloaded:
            recent = self._latencies
            slow = bool(recent) and latency > statistics.median(recent) * self.latency_tolerance
            recent.append(latency)
        if overloaded or slow:
            self.limit = max(self.floor, self.limit * self.backoff)
        else:
            self.limit = min(self.ceiling, self.limit + 1 / self.limit)
        self._wake()

    def release_unused(self) -> None:
        """Free a slot whose call was never made: nothing to learn from it."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
