"""The aiohttp application that answers like the OpenAI API, and how to run it.

``make_app(settings)`` builds it; ``running_simulator(settings)`` serves it on a free
port for the length of an ``async with`` and yields the base URL (``.../v1``) to give
``AsyncOpenAI(base_url=...)``. ``serving(settings)`` does the same on the configured port
(the CLI). Every ``/v1`` answer, errors included, is shaped like the provider's, carries
``x-ratelimit-*`` and ``x-request-id`` headers, and needs ``Authorization: Bearer <any>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.typedefs import Handler

from stream.simulator import admin, chat, models, moderation, oracle
from stream.simulator.errors import ApiError
from stream.simulator.settings import SimulatorSettings
from stream.simulator.state import STATE, SimState

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 5.0
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _http_error(request: web.Request, exc: web.HTTPException) -> ApiError:
    where = f"{request.method} {request.path}"
    if exc.status == 404:
        return ApiError(404, f"Invalid URL ({where})")
    if exc.status == 405:
        allow = exc.headers.get("Allow", "")
        return ApiError(
            405, f"Method not allowed ({where}); allowed: {allow}", headers={"Allow": allow}
        )
    return ApiError(exc.status, exc.reason or exc.text or "HTTP error")


def _authorised(request: web.Request) -> bool:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(key.strip())


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    failure = request.match_info.http_exception
    if failure is not None:
        return _http_error(request, failure).response()
    if request.path.startswith("/v1/") and not _authorised(request):
        return ApiError(401, _NO_KEY).response()
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        return _http_error(request, exc).response()
    except Exception:  # a simulator bug must still answer like the provider's 500
        log.exception("simulator failed on %s %s", request.method, request.path)
        return ApiError(500, "The simulator failed; see its log.", kind="server_error").response()


@web.middleware
async def openai_shape(request: web.Request, handler: Handler) -> web.StreamResponse:
    """OpenAI-shaped errors everywhere; headers and counters on ``/v1`` traffic."""
    if not request.path.startswith("/v1/"):
        return await _answer(request, handler)
    state = request.app[STATE]
    started = time.monotonic()
    state.stats.in_flight += 1
    try:
        response = await _answer(request, handler)
    finally:
        state.stats.in_flight -= 1
    stats = state.stats
    stats.requests += 1
    stats.by_status[response.status] += 1
    resource = request.match_info.route.resource
    stats.by_endpoint[f"{request.method} {resource.canonical if resource else '(no route)'}"] += 1
    if response.status == 429:
        stats.rate_limited += 1
    for name, value in state.limiter.headers().items():
        response.headers.setdefault(name, value)
    response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
    response.headers["openai-processing-ms"] = str(round((time.monotonic() - started) * 1000))
    response.headers["openai-version"] = "2020-10-01"
    return response


async def _warm(app: web.Application) -> None:
    await asyncio.to_thread(oracle.warm)


async def _wake_sleepers(app: web.Application) -> None:
    app[STATE].closing.set()


def make_app(settings: SimulatorSettings | None = None) -> web.Application:
    """The simulator as an aiohttp application (no socket opened yet)."""
    app = web.Application(middlewares=[openai_shape], client_max_size=32 * 1024**2)
    app[STATE] = SimState(settings or SimulatorSettings())
    app.router.add_post("/v1/chat/completions", chat.handle)
    app.router.add_post("/v1/moderations", moderation.handle)
    app.router.add_get("/v1/models", models.list_models)
    app.router.add_get("/v1/models/{model}", models.retrieve)
    app.router.add_get("/sim/stats", admin.stats)
    app.router.add_get("/sim/config", admin.get_config)
    app.router.add_post("/sim/config", admin.set_config)
    app.router.add_post("/sim/reset", admin.reset)
    app.on_startup.append(_warm)
    app.on_shutdown.append(_wake_sleepers)
    return app


def base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


@asynccontextmanager
async def _serve(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        handler_cancellation=True,  # a client that gives up ends its request here too
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield base_url(host, int(bound))
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_simulator(settings: SimulatorSettings | None = None) -> AsyncIterator[str]:
    """Serve the simulator on a free port of ``settings.host`` (``settings.port`` is
    ignored: tests run side by side); yields the base URL ending in ``/v1``."""
    settings = settings or SimulatorSettings()
    async with _serve(make_app(settings), settings.host, 0) as url:
        yield url


@asynccontextmanager
async def serving(settings: SimulatorSettings) -> AsyncIterator[str]:
    """Serve the simulator on ``settings.host:settings.port`` (0 picks a free port)."""
    async with _serve(make_app(settings), settings.host, settings.port) as url:
        yield url
