"""Counting the acknowledgements of one event's outputs.

One object per event, called on the loop once per output (librdkafka's delivery
reports, handed over by the sink). When every output has reported, ``on_done`` gets the
first failure or None: only then may the event's offset be committed.
"""

from __future__ import annotations

from collections.abc import Callable

from stream.errors import KafkaError


class Delivery:
    __slots__ = ("failure", "on_done", "remaining")

    def __init__(self, outputs: int, on_done: Callable[[KafkaError | None], None]) -> None:
        self.remaining = outputs
        self.on_done = on_done
        self.failure: KafkaError | None = None

    def __call__(self, error: KafkaError | None) -> None:
        """One output's delivery report."""
        self.remaining -= 1
        if error is not None and self.failure is None:
            self.failure = error
        if self.remaining == 0:
            self.on_done(self.failure)

    def refused(self, error: KafkaError, unsent: int) -> None:
        """``unsent`` outputs were never queued: no report will come for them."""
        self.failure = self.failure or error
        self.remaining -= unsent
        if self.remaining == 0:
            self.on_done(self.failure)
