"""Configured routes with their handler instances."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from handlers.base import Handler, HandlerContext
from handlers.model import ModelPort
from handlers.registry import HANDLERS
from stream import secrets
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
    for rs in settings.routes:
        handler = (handlers or {}).get(rs.name)
        if handler is None:
            cls = HANDLERS.get(rs.handler)
            if cls is None:
                raise ConfigError(
                    f"route {rs.name!r}: handler: unknown handler {rs.handler!r}; "
                    f"accepted: {', '.join(sorted(HANDLERS))}"
                )
            try:
                handler = cls.from_options(rs.options, HandlerContext(rs.name, model))
            except ValidationError as exc:
                raise ConfigError(describe_options(rs.name, rs.handler, cls, exc)) from None
            except ValueError as exc:  # a handler's own check of its options
                message = secrets.mask_text(str(exc))
                raise ConfigError(f"route {rs.name!r} ({rs.handler}): options: {message}") from None
        routes.append(Route(rs, handler))
    return routes


def describe_options(route: str, handler: str, cls: type[Handler], exc: ValidationError) -> str:
    """Bad handler options as the top-level keys are reported: the route by name, each
    option, what was wrong, and the options the handler accepts (never pydantic's own
    text, and never the value of an option we do not know)."""
    accepted = ", ".join(sorted(cls.Options.model_fields))
    lines = [f"route {route!r} (handler {handler}): invalid options:"]
    for error in exc.errors():
        option = ".".join(str(p) for p in error["loc"]) or "(options)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  options.{option}: unknown option; accepted: {accepted}")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        shown = secrets.mask_value(option, error.get("input"))
        got = "" if error["type"] == "missing" else f" (got {_short(shown)})"
        lines.append(f"  options.{option}: {message}{got}")
    return "\n".join(lines)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
