"""Configured routes with their handler instances."""

from __future__ import annotations

from collections.abc import Mapping

from handlers.base import Handler, HandlerContext
from handlers.model import ModelPort
from handlers.registry import HANDLERS
from stream.config import Settings
from stream.errors import ConfigError
from stream.runtime.partition import Route


def needs_model(settings: Settings) -> bool:
    """True if a configured route's handler calls the model."""
    return any(
        (cls := HANDLERS.get(r.handler)) is not None and cls.uses_model for r in settings.routes
    )


def build_routes(
    settings: Settings,
    handlers: Mapping[str, Handler] | None = None,
    model: ModelPort | None = None,
) -> list[Route]:
    """Routes with their handlers: given ones (tests), else built from the registry."""
    routes = []
    for i, rs in enumerate(settings.routes):
        handler = (handlers or {}).get(rs.name)
        if handler is None:
            cls = HANDLERS.get(rs.handler)
            if cls is None:
                raise ConfigError(
                    f"routes.{i}.handler: unknown handler {rs.handler!r}; "
                    f"accepted: {', '.join(sorted(HANDLERS))}"
                )
            try:
                handler = cls.from_options(rs.options, HandlerContext(rs.name, model))
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise ConfigError(f"routes.{i}.options ({rs.handler}): {exc}") from None
        routes.append(Route(rs, handler))
    return routes
