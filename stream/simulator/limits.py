"""Requests-per-minute and tokens-per-minute limits, as the provider enforces them.

Each limit is a token bucket that holds one minute's allowance and refills continuously.
A request reserves its prompt estimate plus ``max_completion_tokens`` (as the provider
counts it). A rejected request consumes nothing. Every answer carries the provider's
``x-ratelimit-*`` headers; a 429 adds ``retry-after`` (whole seconds, rounded up) and
``retry-after-ms``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from stream.simulator.errors import ApiError

Clock = Callable[[], float]
LimitKind = Literal["requests", "tokens"]
_LIMITS_URL = "Visit https://platform.openai.com/account/rate-limits to learn more."


def go_duration(seconds: float) -> str:
    """A duration the way the provider writes resets: ``120ms``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    secs = f"{rest:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class Bucket:
    """``limit`` units per minute; full at the start."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._level = float(limit)
        self._at = clock()

    def level(self) -> float:
        now = self._clock()
        self._level = min(self.limit, self._level + (now - self._at) * self.limit / 60.0)
        self._at = now
        return self._level

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` units are available (0 if they are now)."""
        missing = cost - self.level()
        return max(0.0, missing * 60.0 / self.limit)

    def until_full(self) -> float:
        return (self.limit - self.level()) * 60.0 / self.limit

    def take(self, cost: float) -> None:
        self._level = self.level() - cost

    def headers(self, kind: LimitKind) -> dict[str, str]:
        return {
            f"x-ratelimit-limit-{kind}": str(self.limit),
            f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(self.level()))),
            f"x-ratelimit-reset-{kind}": go_duration(self.until_full()),
        }


@dataclass(frozen=True)
class Rejection:
    """Why a request was refused, in the provider's words."""

    kind: LimitKind
    message: str
    retry_after_s: float | None
    headers: dict[str, str] = field(default_factory=dict)


class RateLimiter:
    """The simulator's RPM and TPM budget; a limit of 0 is unlimited (no headers for it)."""

    def __init__(self, rpm: int, tpm: int, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.requests = Bucket(rpm, clock) if rpm else None
        self.tokens = Bucket(tpm, clock) if tpm else None

    def reconfigure(self, rpm: int, tpm: int) -> None:
        """New limits take effect at once, with a full bucket for a limit that changed."""
        if (self.requests.limit if self.requests else 0) != rpm:
            self.requests = Bucket(rpm, self._clock) if rpm else None
        if (self.tokens.limit if self.tokens else 0) != tpm:
            self.tokens = Bucket(tpm, self._clock) if tpm else None

    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.requests:
            out |= self.requests.headers("requests")
        if self.tokens:
            out |= self.tokens.headers("tokens")
        return out

    def enforce(self, tokens: int, model: str) -> None:
        """``admit``, answering a refusal with the 429 the real API sends."""
        rejection = self.admit(tokens, model)
        if rejection is not None:
            raise ApiError(429, rejection.message, kind=rejection.kind,
                           code="rate_limit_exceeded", headers=rejection.headers)  # fmt: skip

    def admit(self, tokens: int, model: str) -> Rejection | None:
        """Take one request and ``tokens`` from the budget, or say why not (taking nothing)."""
        if self.tokens and tokens > self.tokens.limit:
            return Rejection(
                "tokens",
                f"Request too large for {model} on tokens per min (TPM): Limit "
                f"{self.tokens.limit}, Requested {tokens}. The input or output tokens must "
                f"be reduced in order to run successfully. {_LIMITS_URL}",
                None,
                self.headers(),
            )
        waits: list[tuple[LimitKind, Bucket, float, float]] = []
        if self.requests:
            waits.append(("requests", self.requests, 1, self.requests.wait_for(1)))
        if self.tokens:
            waits.append(("tokens", self.tokens, tokens, self.tokens.wait_for(tokens)))
        blocked = [w for w in waits if w[3] > 0]
        if blocked:
            kind, bucket, cost, _ = blocked[0]
            wait = max(w[3] for w in blocked)
            used = bucket.limit - max(0, math.floor(bucket.level()))
            unit = "RPM" if kind == "requests" else "TPM"
            message = (
                f"Rate limit reached for {model} on {kind} per min ({unit}): Limit "
                f"{bucket.limit}, Used {used}, Requested {cost:g}. Please try again in "
                f"{go_duration(wait)}. {_LIMITS_URL}"
            )
            headers = self.headers() | {
                "retry-after": str(max(1, math.ceil(wait))),
                "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
            }
            return Rejection(kind, message, wait, headers)
        for _, bucket, cost, _ in waits:
            bucket.take(cost)
        return None
