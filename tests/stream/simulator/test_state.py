"""Latency draws and fault draws follow the configured distributions."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from stream.errors import ConfigError
from stream.simulator.faults import draw
from stream.simulator.settings import SimulatorSettings
from stream.simulator.state import SimState


def test_latency_is_lognormal_around_the_median() -> None:
    """The median of many draws is the configured median; flex multiplies it."""
    state = SimState(SimulatorSettings(latency_median_ms=200, latency_sigma=0.5, seed=1))
    plain = [state.latency_s(0, flex=False) for _ in range(4000)]
    flex = [state.latency_s(0, flex=True) for _ in range(4000)]
    assert statistics.median(plain) == pytest.approx(0.2, rel=0.08)
    assert statistics.median(flex) == pytest.approx(0.6, rel=0.08)
    assert max(plain) > 2 * statistics.median(plain)  # a right tail, as lognormal has


def test_per_token_latency_adds_up() -> None:
    """latency_per_output_token_ms adds time in proportion to the completion."""
    state = SimState(SimulatorSettings(latency_median_ms=0, latency_per_output_token_ms=2))
    assert state.latency_s(100, flex=False) == pytest.approx(0.2)


def test_fault_draws_follow_the_rates() -> None:
    """Faults come out in proportion to their rates; the rest is `none`."""
    settings = SimulatorSettings(error_503=0.2, refusal=0.1)
    rng = random.Random(3)
    counts = Counter(draw(settings, rng) for _ in range(10_000))
    assert counts["error_503"] == pytest.approx(2000, rel=0.1)
    assert counts["refusal"] == pytest.approx(1000, rel=0.15)
    assert set(counts) == {"error_503", "refusal", "none"}


def test_rates_above_one_in_total_are_refused() -> None:
    """Fault rates that add up to more than 1 are a configuration error naming them."""
    with pytest.raises(ConfigError, match="fault rates"):
        SimulatorSettings().updated({"error_500": 0.6, "hang": 0.6})
