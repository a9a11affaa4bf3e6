"""The explicit name -> handler class registry (no import-time magic)."""

from __future__ import annotations

from typing import Literal

from handlers.base import Handler
from handlers.echo import EchoHandler
from handlers.logs import LogsHandler
from handlers.moderation import ModerationHandler
from handlers.sentiment import SentimentHandler
from handlers.task import TaskHandler

HandlerName = Literal["echo", "logs", "moderation", "sentiment", "task"]
HANDLERS: dict[str, type[Handler]] = {
    "echo": EchoHandler,
    "logs": LogsHandler,
    "moderation": ModerationHandler,
    "sentiment": SentimentHandler,
    "task": TaskHandler,
}
