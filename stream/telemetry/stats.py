"""The processor's counters, and the retry backoff it uses."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_BACKOFF_S = 30.0


@dataclass(slots=True)
class RouteCounts:
    """What became of one route's events; ``/metrics`` shows them by route."""

    consumed: int = 0
    produced: int = 0  # records acknowledged (or committed): outputs, alerts, dead letters
    dead_lettered: int = 0
    skipped: int = 0
    redelivered: int = 0  # records the consumer handed over twice; skipped


def _total(name: str) -> property:
    return property(lambda self: sum(getattr(r, name) for r in self.routes))


@dataclass
class Stats:
    """Counters of what happened, for tests, the demo and benchmarks. The event counts
    are the routes' own (``RouteCounts``), added up when read."""

    retries: int = 0
    pauses: int = 0
    resumes: int = 0
    commits: int = 0
    transactions: int = 0
    aborted_transactions: int = 0
    routes: list[RouteCounts] = field(default_factory=list)

    consumed = _total("consumed")
    produced = _total("produced")
    dead_lettered = _total("dead_lettered")
    skipped = _total("skipped")
    redelivered = _total("redelivered")


def backoff(attempt: int) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(MAX_BACKOFF_S, 0.1 * 2**attempt))
