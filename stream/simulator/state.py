"""What one running simulator remembers: its settings, budget, prefix cache, counters."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from stream.errors import ConfigError
from stream.simulator.cache import PrefixCache
from stream.simulator.limits import RateLimiter
from stream.simulator.log_teacher import LogTeacher, load_teacher
from stream.simulator.settings import SimulatorSettings
from stream.simulator.teacher import Teacher, load


@dataclass
class Stats:
    """Counters served at ``GET /sim/stats`` (``/v1`` traffic only)."""

    requests: int = 0
    in_flight: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "rate_limited": self.rate_limited,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_endpoint": dict(sorted(self.by_endpoint.items())),
            "faults": dict(sorted(self.faults.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
        }


class SimState:
    """Shared by every request of one app; changed only on the event loop."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.rpm, settings.tpm)
        self.cache = PrefixCache(settings.cache_blocks)
        self.stats = Stats()
        self.rng = random.Random(settings.seed)
        self.closing = asyncio.Event()
        self.teacher: Teacher | None = None
        if settings.teacher is not None:
            self.teacher = load(settings.teacher, settings.teacher_noise, settings.seed)
        self.log_teacher = load_log_teacher(settings.log_teacher)

    def configure(self, changes: dict[str, Any]) -> SimulatorSettings:
        """Apply run-time changes (validated; ``ConfigError`` names a bad key)."""
        self.settings = self.settings.updated(changes)
        self.limiter.reconfigure(self.settings.rpm, self.settings.tpm)
        return self.settings

    def reset(self) -> None:
        """Fresh counters, a full budget and an empty prefix cache; settings stay."""
        self.stats = Stats()
        self.cache.clear()
        self.limiter = RateLimiter(self.settings.rpm, self.settings.tpm)

    def latency_s(self, completion_tokens: int, *, flex: bool) -> float:
        """One draw of the answer time: lognormal around the median, plus per token."""
        s = self.settings
        base = 0.0
        if s.latency_median_ms > 0:
            base = self.rng.lognormvariate(math.log(s.latency_median_ms), s.latency_sigma)
        total_ms = base + s.latency_per_output_token_ms * completion_tokens
        return total_ms / 1000 * (s.flex_latency_factor if flex else 1.0)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the server shuts down (hanging requests included)."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), seconds)


def load_log_teacher(path: str | None) -> LogTeacher | None:
    """The ``--log-teacher`` files, read once; ``ConfigError`` says what is wrong."""
    if path is None:
        return None
    try:
        return load_teacher(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"log_teacher: {exc}") from None


STATE = web.AppKey("sluicegate_simulator_state", SimState)
