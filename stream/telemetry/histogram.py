"""A latency histogram cheap enough for the hot path, read by the metrics collector.

``observe`` is a bisect and two additions; the collector turns the counts into a
Prometheus histogram (cumulative buckets, sum, count) only when it is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# Seconds: from sub-millisecond handler work to model calls of tens of seconds.
DEFAULT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def observe_many(self, seconds: float, times: int) -> None:
        """``times`` observations of ``seconds`` each: one run of events that took as long
        on average, recorded at the cost of one."""
        self.counts[bisect.bisect_left(self.bounds, seconds)] += times
        self.sum += seconds * times

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out
