"""How events are put into a prompt: delimited data, never instructions.

Each event's text goes inside ``<event id="...">`` ... ``</event>``; a closing tag inside
the text is neutralised, so user content cannot end its own block and speak as the
instructions. Several events in one request (micro-batching) are several blocks, and the
answer is an object ``{"results": [{"id": ..., ...}, ...]}`` matched back by id. The
simulator parses the same format (``parse_events``), so both sides share this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_BLOCK = re.compile(r'<event id="([^"<>]*)">\n(.*?)\n</event>', re.DOTALL)
_CLOSE = re.compile(r"</(\s*)(event)", re.IGNORECASE)
_OPEN = re.compile(r"<(\s*)(event)", re.IGNORECASE)

BATCH_KEY = "results"
ID_KEY = "id"


_ZWSP = "\u200b"  # a zero-width space breaks the tag for the parser, not for a reader


def escape(text: str) -> str:
    """Make ``text`` unable to open or close an event block."""
    text = _CLOSE.sub(lambda m: f"</{m.group(1)}{_ZWSP}{m.group(2)}", text)
    return _OPEN.sub(lambda m: f"<{m.group(1)}{_ZWSP}{m.group(2)}", text)


def format_events(events: Iterable[tuple[str, str]]) -> str:
    """The user message for ``(id, text)`` pairs."""
    return "\n".join(f'<event id="{eid}">\n{escape(text)}\n</event>' for eid, text in events)


def parse_events(message: str) -> list[tuple[str, str]]:
    """The ``(id, text)`` pairs of a user message made by ``format_events``."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(message)]
