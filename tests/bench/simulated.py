"""The OpenAI simulator in a process of its own, for the model benchmarks.

    python -m tests.bench.simulated '<SimulatorSettings as JSON>'

Its own process, so that the simulator's event loop does not compete with the client's
for one core: a storm of thousands of requests would otherwise slow the answers down
and measure the loop rather than the limits. The child prints its base URL on the first
line and serves until its standard input closes. Besides the simulator's ``/sim/*``
controls it answers ``POST /bench/drain``: both rate-limit buckets emptied, as after a
minute of running at the limit, so that a run measures the sustained rate and not the
burst a full minute's allowance gives at the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from stream.simulator.server import base_url, make_app
from stream.simulator.settings import SimulatorSettings
from stream.simulator.state import STATE

START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Simulator:
    """A running simulator process: its ``/v1`` base URL and its controls."""

    url: str

    async def _call(self, method: str, path: str) -> dict[str, Any]:
        admin = self.url.removesuffix("/v1") + path
        async with aiohttp.ClientSession() as session, session.request(method, admin) as resp:
            resp.raise_for_status()
            answer: dict[str, Any] = await resp.json()
            return answer

    async def stats(self) -> dict[str, Any]:
        """What it counted since the last reset (``GET /sim/stats``)."""
        return await self._call("GET", "/sim/stats")

    async def reset(self) -> None:
        """Fresh counters, full rate-limit buckets, an empty prefix cache."""
        await self._call("POST", "/sim/reset")

    async def drain(self) -> None:
        """Both rate-limit buckets empty: the minute's allowance already spent."""
        await self._call("POST", "/bench/drain")


@contextlib.asynccontextmanager
async def simulator(settings: SimulatorSettings) -> AsyncIterator[Simulator]:
    """Start the simulator process with ``settings`` (on a free port) for the block."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __spec__.name,
        settings.model_copy(update={"port": 0}).model_dump_json(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT_S)
        if not line.startswith(b"http"):
            raise RuntimeError(f"the simulator process did not start (it said {line!r})")
        yield Simulator(line.decode().strip())
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()


async def _drain(request: web.Request) -> web.Response:
    limiter = request.app[STATE].limiter
    for bucket in (limiter.requests, limiter.tokens):
        if bucket is not None:
            bucket.take(bucket.level())
    return web.json_response(limiter.headers())


async def _serve(settings: SimulatorSettings) -> None:
    app = make_app(settings)
    app.router.add_post("/bench/drain", _drain)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, 0, backlog=4096)
        await site.start()
        print(base_url(settings.host, int(runner.addresses[0][1])), flush=True)
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our stdin
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(_serve(SimulatorSettings.model_validate_json(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
