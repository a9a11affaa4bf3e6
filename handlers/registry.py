"""The explicit name -> handler class registry (no import-time magic)."""

from __future__ import annotations

from typing import Literal

from handlers.base import Handler
from handlers.echo import EchoHandler

HandlerName = Literal["echo"]
HANDLERS: dict[str, type[Handler]] = {"echo": EchoHandler}
