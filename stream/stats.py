"""The processor's counters, and the retry backoff it uses."""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_BACKOFF_S = 30.0


@dataclass
class Stats:
    """Counters of what happened, for tests, the demo and benchmarks."""

    consumed: int = 0
    produced: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    retries: int = 0
    pauses: int = 0
    resumes: int = 0
    commits: int = 0
    transactions: int = 0
    aborted_transactions: int = 0
    redelivered: int = 0  # records the consumer handed over twice; skipped


@dataclass(slots=True)
class RouteCounts:
    """What became of one route's events; ``/metrics`` shows them by route."""

    consumed: int = 0
    produced: int = 0  # records acknowledged (or committed): outputs, alerts, dead letters
    dead_lettered: int = 0
    skipped: int = 0
    redelivered: int = 0


def backoff(attempt: int) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(MAX_BACKOFF_S, 0.1 * 2**attempt))
