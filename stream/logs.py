"""Log set-up: one JSON object per line (for log shippers) or plain console lines.

Lines logged while an event is being handled carry its route, topic, partition and
offset: the processor sets ``EVENT`` in the task that handles the event (a task copies
the context it starts in, so each event's task sees its own), and ``EventFields`` adds
them to every record logged there, the handler's included. A model request serves a
whole batch of events, so its lines carry none.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from stream.config import LogSettings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

NOISY = ("httpx2", "httpcore2", "httpx", "httpcore")

# The event being handled in the current task: route, topic, partition, offset.
EVENT: ContextVar[Mapping[str, Any] | None] = ContextVar("sluicegate_event", default=None)


def event_fields(route: str, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """The fields that place a log line at one event (also usable as ``extra=``)."""
    return {"route": route, "topic": topic, "partition": partition, "offset": offset}


class EventFields(logging.Filter):
    """Adds the current event's fields (``EVENT``) to a record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = EVENT.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; exceptions as one string field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def make_handler(settings: LogSettings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(EventFields())
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    return handler


def configure(settings: LogSettings) -> None:
    handler = make_handler(settings)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # The HTTP client logs a line per model request at INFO: thousands a minute. Its
    # warnings still show, and all of it at DEBUG.
    quiet = logging.DEBUG if settings.level == "DEBUG" else logging.WARNING
    for name in NOISY:
        logging.getLogger(name).setLevel(quiet)
