"""The seam between the processor and its two commit strategies.

The processor owns partitions, lanes and handlers; a ``Guarantee`` owns what happens to
an event's outputs once the handler is done (sent and acknowledged, or staged for a
transaction) and how offsets are committed. ``AtLeastOnce`` (stream/runtime/
atleastonce.py) and ``ExactlyOnce`` (stream/runtime/exactlyonce.py) implement it; each
reaches back into the processor only through ``Core``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator, Mapping, MutableMapping
from typing import Any, Protocol

from schemas.records import OutRecord, SourceRecord
from stream.config import Settings
from stream.kafka.sink import Sink
from stream.runtime.deadletters import DeadLetters
from stream.runtime.partition import TP, Partition
from stream.telemetry.histogram import Histogram
from stream.telemetry.stats import Stats

# The fast path's common case: (record, output value, output headers) to the route's topic.
Answer = tuple[SourceRecord, bytes, list[tuple[str, bytes | None]]]


class Core(Protocol):
    """What a guarantee may use of the processor."""

    settings: Settings
    stats: Stats
    stages: Mapping[str, Histogram]
    room: asyncio.Event  # set whenever events finish

    @property
    def parts(self) -> MutableMapping[TP, Partition]: ...

    def fail(self, error: BaseException) -> None: ...

    def finished(self, part: Partition, offsets: list[int]) -> None:
        """These offsets are done (acknowledged or staged)."""

    def advance(self, part: Partition, record: SourceRecord) -> None:
        """``record`` is out of its lane's way: the next event of the lane may start."""

    @property
    def dead_letters(self) -> DeadLetters: ...

    def spawn(self, part: Partition, work: Coroutine[Any, Any, None]) -> None: ...

    def group_metadata(self) -> object: ...

    def commit_offsets(self, offsets: Mapping[TP, int]) -> None:
        """Commit consumer offsets asynchronously (at-least-once)."""


class Guarantee(Protocol):
    """One commit strategy. Every method runs on the event loop."""

    sink: Sink

    def settle(self, part: Partition, record: SourceRecord, outputs: list[OutRecord]) -> None:
        """The handler is done with ``record``: deliver (or stage) its outputs; the event
        finishes when they are acknowledged (or staged) and its lane moves on."""

    def settle_run(self, part: Partition, answers: Iterator[Answer]) -> None:
        """``settle`` for the fast path's common case, a run of events at once."""

    def poll_wait(self, default_s: float) -> float:
        """How long the next poll may wait for records."""

    def room_coming(self) -> Coroutine[Any, Any, object] | None:
        """Something that frees held events soon (acknowledgements, a commit), to await
        before a poll that would reach a bound; None if nothing is on its way."""

    async def after_poll(self, polled: bool) -> None:
        """After every poll: commit when due."""

    async def release(self, parts: list[Partition]) -> dict[TP, int]:
        """Revoke or shutdown: the offsets to commit synchronously for ``parts``, after
        committing what the strategy commits itself."""

    async def lost(self, parts: list[Partition], forget: Any) -> None:
        """``parts`` were lost without a chance to commit; ``forget(parts)`` drops them."""

    def on_commit(self, results: list[tuple[TP, int, str | None]]) -> None:
        """The broker answered an offset commit: (partition, offset, error or None)."""

    async def close(self) -> None:
        """Wait for a running commit; the processor closes the sink itself."""
