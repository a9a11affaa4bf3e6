"""Rate limits like the provider's: x-ratelimit-* on every answer, 429 with retry-after
when a budget is spent, nothing consumed by a rejected request."""

from __future__ import annotations

import openai
import pytest

from stream.simulator.limits import RateLimiter, go_duration
from stream.simulator.server import running_simulator
from tests.stream.simulator.conftest import FAST, sdk

RATELIMIT_HEADERS = [
    f"x-ratelimit-{what}-{kind}"
    for what in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_rpm_exceeded_gives_429_with_retry_after() -> None:
    """With rpm=3 the fourth request in a row is a 429 carrying retry-after and limits."""
    async with running_simulator(FAST.updated({"rpm": 3})) as url, sdk(url) as client:
        remaining = []
        for _ in range(3):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-5.4-nano", messages=[{"role": "user", "content": "hi"}]
            )
            assert all(name in raw.headers for name in RATELIMIT_HEADERS)
            remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(
                model="gpt-5.4-nano", messages=[{"role": "user", "content": "hi"}]
            )
    error = raised.value
    headers = error.response.headers
    assert int(headers["retry-after"]) >= 1
    assert 0 < int(headers["retry-after-ms"]) <= 20_000
    assert all(name in headers for name in RATELIMIT_HEADERS)
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert "Rate limit reached for gpt-5.4-nano on requests" in error.message


def test_rejected_request_consumes_nothing() -> None:
    """A request refused for tokens leaves both budgets as they were."""
    clock = FakeClock()
    limiter = RateLimiter(rpm=10, tpm=1000, clock=clock)
    assert limiter.admit(900, "m") is None
    before = limiter.headers()
    rejection = limiter.admit(200, "m")
    assert rejection is not None
    assert rejection.kind == "tokens"
    assert limiter.headers() == before
    assert before["x-ratelimit-remaining-requests"] == "9"
    assert before["x-ratelimit-remaining-tokens"] == "100"


def test_budget_refills_continuously() -> None:
    """A spent token budget refills at limit/60 per second; retry-after says when."""
    clock = FakeClock()
    limiter = RateLimiter(rpm=0, tpm=600, clock=clock)
    assert limiter.admit(600, "m") is None
    rejection = limiter.admit(100, "m")
    assert rejection is not None
    assert rejection.retry_after_s == pytest.approx(10.0)
    assert rejection.headers["retry-after"] == "10"
    assert rejection.headers["x-ratelimit-reset-tokens"] == "1m0s"
    clock.now = 10.0
    assert limiter.admit(100, "m") is None
    assert "x-ratelimit-limit-requests" not in limiter.headers()  # rpm=0: unlimited


def test_request_larger_than_the_budget_is_refused_without_retry_after() -> None:
    """A request above the whole TPM limit can never pass: no retry-after is offered."""
    rejection = RateLimiter(rpm=10, tpm=100, clock=FakeClock()).admit(101, "m")
    assert rejection is not None
    assert rejection.message.startswith("Request too large")
    assert "retry-after" not in rejection.headers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.12, "120ms"), (0.0004, "1ms"), (1, "1s"), (1.5, "1.5s"), (360, "6m0s")],
)
def test_reset_durations_in_the_providers_format(seconds: float, text: str) -> None:
    """Resets are written like the provider's headers: 120ms, 1.5s, 6m0s."""
    assert go_duration(seconds) == text
