"""Invalid model answers are counted per route and said out loud (WARN, rate-limited)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, cast

import pytest

from stream.config import Settings
from stream.model.errors import ModelOutputInvalid
from stream.model.quality import WINDOW_S, AnswerQuality
from stream.model.service import ModelService
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings
from stream.telemetry.metrics import RuntimeCollector
from tests.stream.model.fakes import TASK


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_route_with_mostly_invalid_answers_warns_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Counts per route; one WARN per window naming the route, the counts and the last
    reason; a healthy route stays quiet."""
    clock = Clock()
    quality = AnswerQuality(clock)
    with caplog.at_level(logging.WARNING, logger="stream.model.quality"):
        for second in range(int(3 * WINDOW_S)):
            clock.now = float(second)
            quality.record("reviews", "invalid", "the answer was cut off")
            quality.record("reviews", "valid")
            quality.record("logs", "valid")
            quality.record("logs", "invalid" if second % 10 == 0 else "valid", "bad json")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # two whole windows have passed
    assert all(re.match(r"route reviews: 6\d of 12\d model answers invalid", w) for w in warnings)
    assert "the answer was cut off" in warnings[0]
    assert quality.totals["reviews"]["invalid"] == 3 * WINDOW_S
    assert quality.totals["logs"]["invalid"] == 18


@pytest.mark.asyncio
async def test_invalid_answers_of_a_runaway_server_are_counted_and_exported() -> None:
    """A server that ignores the output limit (max_tokens forced off): events asked
    alone fail as cut off, and sluicegate_model_answers_total{route,outcome} shows it."""
    sim = SimulatorSettings(port=0, latency_median_ms=1, seed=2, emulate="llama-cpp-python")
    async with running_simulator(sim) as url:
        settings = Settings(
            model={"api_key": "none", "base_url": url, "model": "gemma",
                   "send_max_tokens": False},
            budget={"prices": {"gemma": {"input": 0, "cached_input": 0, "output": 0}}},
        )  # fmt: skip
        service = ModelService(settings)
        results = await asyncio.gather(
            *(service.ask(TASK, f"review {i}", route="reviews", batch=False) for i in range(3)),
            return_exceptions=True,
        )
        await service.aclose()
    assert all(isinstance(r, ModelOutputInvalid) for r in results)
    assert service.quality.totals["reviews"]["invalid"] == 3
    collector = RuntimeCollector(cast("Any", None), service)
    samples = {
        (s.labels["route"], s.labels["outcome"]): s.value
        for metric in collector._model(service)
        if metric.name == "sluicegate_model_answers"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert samples[("reviews", "invalid")] == 3
    assert samples[("reviews", "valid")] == 0
