"""The model the handler tests share: the simulator through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from stream.config import Settings
from stream.model.service import ModelService


@pytest_asyncio.fixture
async def model(simulator: str) -> AsyncIterator[ModelService]:
    """A ModelService on the test simulator; gpt-5.4-mini is priced for escalation."""
    settings = Settings(
        model={"base_url": simulator, "api_key": "sim", "batch_wait_ms": 2},
        budget={"prices": {"gpt-5.4-mini": {"input": 0.75, "cached_input": 0.075, "output": 4.5}}},
    )
    service = ModelService(settings)
    try:
        yield service
    finally:
        await service.aclose()
