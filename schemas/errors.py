"""The root of the error tree and the per-event faults, importable by every package.

They live here, at the bottom of the import graph (stream -> handlers -> schemas), so a
handler can raise ``BadInput`` without importing the runtime. ``stream/errors.py`` adds
the runtime's own errors and draws the whole tree.
"""

from __future__ import annotations


class SluicegateError(Exception):
    """Root of every error this project raises on purpose.

    ``retriable``: trying again later can succeed. ``fatal``: no event can succeed until
    someone fixes the cause (a bad API key, an unknown model), so the processor stops
    instead of dead-lettering every event.
    """

    retriable: bool = False
    fatal: bool = False


class EventError(SluicegateError):
    """One event cannot be processed; it is dead-lettered and the stream goes on."""

    stage: str = "handler"


class BadInput(EventError):
    """The record's bytes are not what the route accepts (encoding, JSON, shape)."""

    stage = "decode"
