"""Adaptive concurrency: as many calls in flight as the endpoint absorbs, no more.

AIMD, as TCP does: every success adds ``1 / limit`` (about one more slot per round of
calls); a 429, a timeout, or latency far above the median of the recent calls cuts the
limit by ``backoff``. The limit stays between ``floor`` and ``ceiling``.

When calls wait for a slot, one of the same kind (``key``: the task) as the call last
let through goes first, at most ``affinity`` times in a row ahead of an older waiter: a
server that answers one request at a time and keeps the prompt it last read (llama.cpp)
then reads each task's long instructions once per run of its requests, not again after
every request of another task.

The median, not the best latency seen: answer times spread widely (they grow with the
answer's length, and vary from call to call anyway), and against the fastest call ever
seen about half of all normal calls would look slow and hold the limit near the floor.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque
from collections.abc import Hashable


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
        affinity: int = 8,
    ) -> None:
        self.floor, self.ceiling = floor, ceiling
        self.limit = float(min(max(initial, floor), ceiling))
        self.backoff = backoff
        self.latency_tolerance = latency_tolerance
        self.in_flight = 0
        self.affinity = affinity
        self._waiters: deque[tuple[asyncio.Future[None], Hashable]] = deque()
        self._last_key: Hashable = None
        self._skipped = 0  # grants in a row that went ahead of the oldest waiter
        self._latencies: deque[float] = deque(maxlen=latency_window)  # recent successes

    async def acquire(self, key: Hashable = None) -> None:
        """Wait for a free slot (first come, first served, but see ``affinity``)."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            self._last_key = key
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, key)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # the slot was handed over just as we were cancelled
                self._wake()
            else:
                self._waiters.remove(entry)
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
            entry = self._next()
            self._waiters.remove(entry)
            waiter, key = entry
            if not waiter.done():
                self.in_flight += 1
                self._last_key = key
                waiter.set_result(None)

    def _next(self) -> tuple[asyncio.Future[None], Hashable]:
        """The oldest waiter, or the oldest of the last key's while ``affinity`` allows."""
        oldest = self._waiters[0]
        if oldest[1] != self._last_key and self._skipped < self.affinity:
            for entry in self._waiters:
                if entry[1] == self._last_key and not entry[0].done():
                    self._skipped += 1
                    return entry
        self._skipped = 0
        return oldest
