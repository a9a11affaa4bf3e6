"""The small contract between the runtime and a handler.

A handler turns one source record into a ``Result``. It never talks to Kafka: the
runtime consumes, produces, retries, dead-letters and commits. A handler raises
``schemas.errors.BadInput`` (or another ``EventError``) for a fault of the event itself,
and lets retriable errors propagate so the runtime retries them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict

from handlers.model import ModelPort
from schemas.records import SourceRecord


class HandlerOptions(BaseModel):
    """Per-route options of a handler (``[routes.options]``); subclasses add fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Result(NamedTuple):
    """What a handler made of one event (immutable; a named tuple because one is built
    per event on the hot path, see schemas/records.py).

    ``value`` is the enriched event for the route's output topic; None is an explicit,
    counted skip (``skip_reason`` says why). ``alerts`` go to the alerts topic.
    """

    value: bytes | None
    alerts: tuple[bytes, ...] = ()
    skip_reason: str | None = None


@dataclass(frozen=True)
class HandlerContext:
    """What the runtime hands a handler: its route's name and the model, if any."""

    route: str = ""
    model: ModelPort | None = None

    def require_model(self, handler: str) -> ModelPort:
        if self.model is None:
            raise RuntimeError(f"handler {handler!r} needs the model, but none was given")
        return self.model


class Handler(ABC):
    """One enrichment task. Instances are shared by all events of a route."""

    name: ClassVar[str]
    Options: ClassVar[type[HandlerOptions]] = HandlerOptions
    uses_model: ClassVar[bool] = False  # the runtime builds the model client only if needed
    # True if ``try_now`` may answer without awaiting (local tier, cache, pure code): the
    # runtime then skips creating a task for the event, which is most of its cost.
    answers_now: bool = False

    def __init__(self, options: HandlerOptions, context: HandlerContext | None = None) -> None:
        self.options = options
        self.context = context or HandlerContext()

    def try_now(self, record: SourceRecord) -> Result | None:
        """Answer at once if possible, else None (then ``handle`` is awaited). Must have
        no side effects: the runtime may call ``handle`` after it for the same record."""
        return None

    @classmethod
    def from_options(cls, raw: Mapping[str, Any], context: HandlerContext | None = None) -> Handler:
        """Validate raw route options (pydantic ``ValidationError`` on bad ones)."""
        return cls(cls.Options.model_validate(dict(raw)), context)

    def effective_options(self) -> dict[str, Any]:
        """The options in effect, as plain data: what ``config check`` shows. Subclasses
        fill in the defaults an unset option stands for."""
        return self.options.model_dump(mode="json")

    @abstractmethod
    async def handle(self, record: SourceRecord) -> Result:
        """Process one record."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most handlers hold nothing
        """Release what the handler holds; called once at shutdown."""
