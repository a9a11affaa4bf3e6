"""What a handler sees of the model: ``ModelPort.ask(task, text) -> Reply``.

The runtime implements it (stream/model/service.py) with batching, the cache, limits,
retries, the breaker and the cost meter behind it; a handler only states its task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel

from schemas.enriched import Alert


@dataclass(frozen=True)
class Task:
    """What a handler asks of the model: static instructions and the output model.

    ``instructions`` stay identical across calls and come first in the prompt, so the
    provider's automatic prefix cache applies to them. ``model`` overrides the configured
    model (e.g. to escalate to a larger one).
    """

    name: str
    instructions: str
    output: type[BaseModel]
    model: str | None = None
    # "flex": slower, billed at batch prices; falls back to the default tier when the
    # provider has no flex capacity.
    service_tier: str | None = None


@dataclass(frozen=True)
class Reply:
    """One event's answer, where it came from, and its share of the request's cost."""

    output: BaseModel
    source: Literal["model", "cache"]
    model: str
    prompt_tokens: float = 0.0
    cached_tokens: float = 0.0
    completion_tokens: float = 0.0
    usd: float = 0.0
    tier: str = "default"
    # This event's share of the requests made (a batch of 16 in one request: 1/16 each).
    calls: float = 0.0
    # The model id the server says answered (the response's ``model``), when it differs
    # from ``model`` (the id asked for and priced): the simulator says
    # "gpt-5.4-nano-simulated", and the enriched event's ``source`` must say so too.
    served_by: str = ""


@dataclass(frozen=True)
class Moderation:
    """The free moderation endpoint's verdict: a score per taxonomy category."""

    scores: dict[str, float]
    model: str


class ModelPort(Protocol):
    async def ask(self, task: Task, text: str, *, route: str, batch: bool = True) -> Reply:
        """The validated answer for one event's text; raises per-event errors
        (``EventError``: dead-letter it) and retriable or fatal ones (let them pass)."""
        ...

    async def moderate(self, text: str, *, route: str) -> Moderation:
        """Scores of the free moderation endpoint (``/v1/moderations``); no tokens."""
        ...

    def take_alerts(self) -> list[Alert]:
        """Alerts about the model itself (budget thresholds) not yet published; the
        handler whose call raised them publishes them with its event."""
        ...
