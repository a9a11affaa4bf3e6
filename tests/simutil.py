"""The simulator in tests: a fixture-ready server and its admin endpoints."""

from __future__ import annotations

from typing import Any

import aiohttp


async def sim_config(url: str, **changes: Any) -> None:
    """Change the running simulator's settings (``POST /sim/config``)."""
    admin = url.removesuffix("/v1") + "/sim/config"
    async with aiohttp.ClientSession() as session, session.post(admin, json=changes) as resp:
        assert resp.status == 200, await resp.text()


async def sim_stats(url: str) -> dict[str, Any]:
    """What the simulator counted (``GET /sim/stats``)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url.removesuffix("/v1") + "/sim/stats") as resp,
    ):
        stats: dict[str, Any] = await resp.json()
        return stats
