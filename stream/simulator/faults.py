"""Injected faults: drawn per request from the configured rates, or forced with the
``x-sim-fault`` header so a test knows exactly what it gets.

    error_500     500, server_error body
    error_503     503, server_error body (the provider is overloaded)
    rate_limit    429 as if the budget were spent (header only; no rate for it)
    hang          sleeps ``hang_s`` before answering: the client's timeout should fire
    invalid_json  the content is not JSON (finish_reason stop)
    truncated     the content is cut mid-way (finish_reason length)
    wrong_enum    valid JSON, but one enum field holds a value outside its enum
    refusal       ``message.refusal`` is set and the content is null
    none          no fault, whatever the rates say
"""

from __future__ import annotations

import random
from typing import Literal, get_args

from stream.simulator.settings import FAULT_RATES, SimulatorSettings

FaultKind = Literal[
    "error_500",
    "error_503",
    "rate_limit",
    "hang",
    "invalid_json",
    "truncated",
    "wrong_enum",
    "refusal",
    "none",
]
FAULT_HEADER = "x-sim-fault"
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_ALIASES = {"500": "error_500", "503": "error_503", "429": "rate_limit"}
REFUSAL = "I can't help with that."


def parse_forced(header: str | None) -> FaultKind | None:
    """The fault an ``x-sim-fault`` header forces; ``ValueError`` names accepted kinds."""
    if header is None:
        return None
    kind = _ALIASES.get(header.strip(), header.strip().lower())
    if kind not in FAULT_KINDS:
        raise ValueError(
            f"{FAULT_HEADER}: {header!r} is not a fault; accepted: {', '.join(FAULT_KINDS)}"
        )
    return kind  # type: ignore[return-value]  # checked against FAULT_KINDS just above


def draw(settings: SimulatorSettings, rng: random.Random) -> FaultKind:
    """One fault (or ``none``) with the configured probabilities."""
    point = rng.random()
    for name in FAULT_RATES:
        rate = float(getattr(settings, name))
        if point < rate:
            return name  # type: ignore[return-value]  # FAULT_RATES are FaultKind names
        point -= rate
    return "none"


def break_json(content: str) -> str:
    """Not JSON: single quotes and a trailing comma, as a sloppy model writes (``{,}`` for
    an empty object), so no parser accepts it."""
    body = content.replace('"', "'").rstrip()
    if body.endswith(("}", "]")):
        return body[:-1] + "," + body[-1]
    return body + ","


def truncate(content: str) -> str:
    """The first half or so of ``content``: what a ``length`` stop leaves."""
    return content[: max(1, len(content) // 2)]
