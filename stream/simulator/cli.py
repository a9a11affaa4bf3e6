"""``sluicegate simulate-nano``: serve the simulator until SIGTERM or Ctrl-C.

Every ``SimulatorSettings`` field is a flag (``--error-503 0.2``, ``--no-flex-available``).
This module imports only the settings; the server (aiohttp) is imported when the command
runs, so ``sluicegate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import types
import typing

from pydantic import ValidationError

from stream.errors import ConfigError
from stream.simulator.settings import FAULT_RATES, SimulatorSettings, describe


def _flag_type(annotation: object) -> type:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation if isinstance(annotation, type) else str


def add_simulator_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register ``simulate-nano`` on the top-level command parser."""
    parser = subparsers.add_parser(
        "simulate-nano",
        help="serve an OpenAI-compatible simulator of gpt-5.4-nano (tests, benchmarks, demo)",
        description="Serve an OpenAI-compatible simulator of gpt-5.4-nano on HTTP. Point "
        "sluicegate (or any OpenAI client) at it with OPENAI_BASE_URL=<printed URL> "
        "OPENAI_API_KEY=sim. Fault rates are shares of requests in [0, 1]; a request can "
        "force one with the header x-sim-fault: <kind>.",
    )
    for name, field in SimulatorSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        shown = f"{field.description} (default: {field.default})"
        kind = _flag_type(field.annotation)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=shown)
        else:
            metavar = "RATE" if name in FAULT_RATES else {int: "N", float: "X"}.get(kind, "TEXT")
            metavar = "FILE" if name == "teacher" else metavar
            parser.add_argument(flag, type=kind, metavar=metavar, help=shown)
    parser.set_defaults(handler=_cmd_simulate)


def _settings(args: argparse.Namespace) -> SimulatorSettings:
    given = {
        name: getattr(args, name)
        for name in SimulatorSettings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        return SimulatorSettings(**given)
    except ValidationError as exc:
        raise ConfigError(f"simulate-nano: {describe(exc)}") from None


def _cmd_simulate(args: argparse.Namespace) -> int:
    return asyncio.run(serve_until_stopped(_settings(args)))


async def serve_until_stopped(settings: SimulatorSettings) -> int:
    """Serve until SIGTERM/SIGINT; print the base URL and how to use it first."""
    from stream.simulator.server import serving  # noqa: PLC0415 - keeps `--help` fast

    async with contextlib.AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(serving(settings))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
        print(f"simulate-nano: serving {url} (answers say '<model>-simulated')")
        print(f"point sluicegate at it: OPENAI_BASE_URL={url} OPENAI_API_KEY=sim")
        print(f"stats: {url.removesuffix('/v1')}/sim/stats  config: POST .../sim/config")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    return 0
