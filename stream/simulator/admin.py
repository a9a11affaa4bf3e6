"""``/sim/*``: the simulator's own controls, for tests and benchmarks (no auth).

GET  /sim/stats    counters: requests, by status and endpoint, 429s, faults, tokens
GET  /sim/config   the settings in effect
POST /sim/config   change fault rates, limits, latency at run time (JSON object of
                   settings; host, port, seed and cache_blocks are start-up only)
POST /sim/reset    fresh counters, full rate-limit budget, empty prefix cache
"""

from __future__ import annotations

from aiohttp import web

from stream.errors import ConfigError
from stream.simulator.errors import bad_request, json_response, read_json
from stream.simulator.state import STATE


async def stats(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].stats.as_dict())


async def get_config(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].settings.model_dump(mode="json"))


async def set_config(request: web.Request) -> web.Response:
    changes = await read_json(request)
    if not isinstance(changes, dict):
        raise bad_request("expected a JSON object of settings to change")
    try:
        settings = request.app[STATE].configure(changes)
    except ConfigError as exc:
        raise bad_request(str(exc)) from None
    return json_response(settings.model_dump(mode="json"))


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reset()
    return json_response(state.stats.as_dict())
