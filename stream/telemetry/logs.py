"""Log set-up: one JSON object per line (for log shippers) or plain console lines.

Lines logged while an event is being handled carry its route, topic, partition and
offset: the processor sets ``EVENT`` in the task that handles the event (a task copies
the context it starts in, so each event's task sees its own), and ``EventFields`` adds
them to every record logged there, the handler's included. A model request serves a
whole batch of events, so its lines carry none.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from stream.config import LogSettings
from stream.secrets import SecretMaskingFilter

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
        elif record.exc_text:  # already formatted (and masked) by SecretMaskingFilter
            entry["exc"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def make_handler(settings: LogSettings, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(EventFields())
    handler.addFilter(SecretMaskingFilter())  # last: it sees the fields added above
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


# -- librdkafka's log -----------------------------------------------------------------

LIBRDKAFKA_LOGGER = "sluicegate.librdkafka"
# How long a repeated librdkafka line stays suppressed before it is said again, with
# the count of its repeats. An unreachable broker makes librdkafka log ~25 lines a
# second; this turns them into one line per state and a reminder a minute.
REPEAT_EVERY_S = 60.0
_VARYING = re.compile(r"\d+(?:\.\d+)?")
_REMEMBERED = 256


class RateLimitLibrdkafka(logging.Filter):
    """One line per librdkafka state: a line whose text, digits aside, was logged in the
    last ``every_s`` seconds is dropped and counted; the next one said carries the count.

    confluent-kafka calls ``logger.log(level, "%s [%s] %s", facility, client, message)``;
    the facility, the client's kind and the message (numbers ignored) name the state."""

    def __init__(
        self, every_s: float = REPEAT_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()  # librdkafka may log from its own threads
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        facility, client, message = args if len(args) == 3 else ("", "", record.getMessage())
        # The client's kind (consumer, producer) is part of the state, its number is not.
        state = _VARYING.sub("#", f"{facility} {client} {message}")
        now = self.clock()
        with self._lock:
            said_at, repeats = self._seen.get(state, (None, 0))
            if said_at is not None and now - said_at < self.every_s:
                self._seen[state] = (said_at, repeats + 1)
                self.suppressed += 1
                return False
            self._seen[state] = (now, 0)
            self._seen.move_to_end(state)
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        if repeats:
            record.msg = f"{record.getMessage()} (and {repeats} more like it)"
            record.args = None
        return True


_librdkafka_lock = threading.Lock()


def librdkafka_logger() -> logging.Logger:
    """The logger to pass as ``logger=`` to every confluent-kafka client: librdkafka's
    lines then go through our handlers (format, masking) once per state instead of
    straight to stderr by the dozen."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    with _librdkafka_lock:
        if not any(isinstance(f, RateLimitLibrdkafka) for f in logger.filters):
            logger.addFilter(RateLimitLibrdkafka())
    return logger


def ensure_cli_logging() -> None:
    """For commands that do not call ``configure``: show warnings (librdkafka's included)
    on stderr as plain lines, masked, if nothing else set up logging."""
    root = logging.getLogger()
    if not root.handlers:
        handler = make_handler(LogSettings(format="console", level="WARNING"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
