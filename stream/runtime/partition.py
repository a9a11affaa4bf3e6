"""What the processor knows about one assigned partition while it owns it.

``Partition`` is the single owner of a partition's state: its offsets, ordering lanes,
tasks, staged outputs (exactly-once) and commit positions. Every count the runtime
needs (events held, events running, events staged) is derived from these, never kept
in step by hand elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush

from handlers.base import Handler
from schemas.records import Headers, OutRecord, SourceRecord
from stream import __version__
from stream.config import RouteSettings
from stream.kafka.headers import partition_trace
from stream.runtime.lanes import Lanes
from stream.runtime.offsets import PartitionOffsets
from stream.telemetry.stats import RouteCounts

TP = tuple[str, int]


@dataclass(frozen=True)
class Route:
    """A configured route with its handler instance and its events' counts."""

    settings: RouteSettings
    handler: Handler
    counts: RouteCounts = field(default_factory=RouteCounts, compare=False)

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass(eq=False)
class Partition:
    """Offsets, ordering lanes, running tasks, (exactly-once) staged outputs, and where
    its commits stand."""

    tp: TP
    route: Route
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    lanes: Lanes = field(init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    staged: dict[int, list[OutRecord]] = field(default_factory=dict)
    # Exactly-once: the staged offsets whose outputs are not in the open transaction (a
    # heap: they are produced in offset order).
    unsent: list[int] = field(default_factory=list)
    paused: bool = False  # as librdkafka was last told; reconciled on every assignment
    closing: bool = False  # revoked or shutting down: no queued event starts any more
    gone: bool = False  # given up: late results are ignored
    # Events whose task was cancelled (revoke, shutdown): in flight, uncommitted, and no
    # longer running; the next owner processes them.
    abandoned: set[int] = field(default_factory=set)
    committed: int | None = None  # the last offset the broker confirmed committed
    commit_sent: int | None = None  # at-least-once: asked for, not confirmed yet
    # When an event of it last finished (or it was idle): the watchdog's clock.
    progressed_at: float = field(default_factory=time.monotonic)
    trace: Headers = ()  # the trace headers shared by all its outputs

    def __post_init__(self) -> None:
        self.lanes = Lanes(self.route.settings.ordering)
        self.trace = partition_trace(self.tp[0], self.tp[1], self.route.name, __version__)

    @property
    def load(self) -> int:
        """Events held in memory for this partition: in flight plus staged."""
        return self.offsets.in_flight + len(self.staged)

    @property
    def running(self) -> int:
        """Events started and not finished: in flight, not waiting in a lane, not given up."""
        return self.offsets.in_flight - self.lanes.waiting - len(self.abandoned)

    def done(self, offset: int) -> None:
        """The event at ``offset`` finished: its outputs are acknowledged or staged."""
        self.offsets.done(offset)
        self.progressed_at = time.monotonic()

    def done_many(self, offsets: Collection[int]) -> None:
        if offsets:
            self.offsets.done_many(offsets)
            self.progressed_at = time.monotonic()

    def new_committable(self) -> int | None:
        """The committable offset, or None if there is none or it is committed (or, at
        least once, asked for) already."""
        offset = self.offsets.committable()
        if offset is None or offset in (self.committed, self.commit_sent):
            return None
        return offset

    def unconfirmed(self) -> int | None:
        """The committable offset unless the broker confirmed it: what a final,
        synchronous commit must send (an asynchronous one may have failed)."""
        offset = self.offsets.committable()
        return None if offset is None or offset == self.committed else offset

    # --- exactly-once: outputs staged until their transaction commits ---------------------

    def stage(self, offset: int, outputs: list[OutRecord]) -> None:
        """Keep the event's outputs until the transaction commits."""
        self.staged[offset] = outputs
        heappush(self.unsent, offset)

    def take_unsent(self, below: int) -> list[OutRecord]:
        """The outputs of the unsent staged offsets below ``below``, in offset order; they
        count as sent from now on."""
        unsent, staged = self.unsent, self.staged
        outputs: list[OutRecord] = []
        while unsent and unsent[0] < below:
            outputs.extend(staged[heappop(unsent)])
        return outputs

    def staged_below(self, offset: int) -> list[OutRecord]:
        """The outputs of every staged offset below ``offset``, in offset order."""
        return [out for o in sorted(o for o in self.staged if o < offset) for out in self.staged[o]]

    def all_unsent(self) -> None:
        """The open transaction was aborted: none of the staged outputs is in it now."""
        self.unsent = list(self.staged)
        heapify(self.unsent)

    def committed_to(self, offset: int) -> tuple[int, int]:
        """Forget staged outputs below ``offset`` (now committed); return how many events
        and outputs that released."""
        ready = [o for o in self.staged if o < offset]
        outputs = sum(len(self.staged.pop(o)) for o in ready)
        self.committed = offset
        return len(ready), outputs


def output_records(
    record: SourceRecord,
    route: RouteSettings,
    *,
    value: bytes | None,
    alerts: tuple[bytes, ...],
    alerts_topic: str,
    trace: Headers,
) -> list[OutRecord]:
    """The records a handler's result becomes: keyed like the input, the input's headers
    kept, trace headers appended."""
    headers = record.headers + trace
    outs = [] if value is None else [OutRecord(route.output_topic, record.key, value, headers)]
    outs.extend(OutRecord(alerts_topic, record.key, alert, headers) for alert in alerts)
    return outs
