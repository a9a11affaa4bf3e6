"""The model a command talks to: the configured endpoint, else the simulator.

``sluicegate demo`` and ``sluicegate eval`` must work on a fresh machine with no API key:
when neither ``model.api_key`` (``OPENAI_API_KEY``) nor ``model.base_url`` is set, they
start the OpenAI-compatible simulator in-process and point the same client at it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from pydantic import SecretStr

from stream.config import Settings
from stream.model.service import ModelService


def configured(settings: Settings) -> bool:
    return settings.model.api_key is not None or settings.model.base_url is not None


@contextlib.asynccontextmanager
async def model_service(
    settings: Settings, *, latency_median_ms: float = 50.0
) -> AsyncIterator[tuple[ModelService, str]]:
    """``(service, where it points)``; the service is closed on exit."""
    if configured(settings):
        service = ModelService(settings)
        try:
            yield service, settings.model.base_url or "the OpenAI API"
        finally:
            await service.aclose()
        return
    from stream.simulator.server import running_simulator  # noqa: PLC0415 - only if needed
    from stream.simulator.settings import SimulatorSettings  # noqa: PLC0415

    sim = SimulatorSettings(port=0, latency_median_ms=latency_median_ms, rpm=0, tpm=0, seed=7)
    async with running_simulator(sim) as url:
        key = SecretStr("simulator")
        model = settings.model.model_copy(update={"base_url": url, "api_key": key})
        service = ModelService(settings.model_copy(update={"model": model}))
        try:
            yield service, "the simulator"
        finally:
            await service.aclose()
