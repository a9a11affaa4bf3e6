"""A simulator on a free port per test, fast (5 ms median), with a seeded draw, and the
real openai SDK pointed at it (its own retries off, as the model client runs it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from openai import AsyncOpenAI

from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings

FAST = SimulatorSettings(latency_median_ms=5, latency_sigma=0.2, seed=7)


def sdk(url: str, *, timeout: float = 10.0) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url, api_key="sim", max_retries=0, timeout=timeout)


@pytest_asyncio.fixture
async def sim_url() -> AsyncIterator[str]:
    async with running_simulator(FAST) as url:
        yield url


@pytest_asyncio.fixture
async def client(sim_url: str) -> AsyncIterator[AsyncOpenAI]:
    async with sdk(sim_url) as openai_client:
        yield openai_client
