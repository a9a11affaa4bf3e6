"""What the processor knows about one assigned partition while it owns it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush

from handlers.base import Handler
from schemas.records import Headers, OutRecord, SourceRecord
from stream import __version__
from stream.config import RouteSettings
from stream.dispatch import Lanes
from stream.kafka.headers import partition_trace
from stream.offsets import PartitionOffsets
from stream.stats import RouteCounts

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
    """Offsets, ordering lanes, running tasks and (exactly-once) staged outputs."""

    tp: TP
    route: Route
    committed: int | None = None  # last offset committed (or found committed at assign)
    offsets: PartitionOffsets = field(default_factory=PartitionOffsets)
    lanes: Lanes = field(init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    running: int = 0  # events started and not finished (queued ones wait in lanes)
    staged: dict[int, list[OutRecord]] = field(default_factory=dict)
    # Exactly-once: the staged offsets whose outputs are not in the open transaction (a
    # heap: they are produced in offset order).
    unsent: list[int] = field(default_factory=list)
    paused: bool = False
    gone: bool = False  # revoked or lost: late results are ignored
    trace: Headers = ()  # the trace headers shared by all its outputs

    def __post_init__(self) -> None:
        self.lanes = Lanes(self.route.settings.ordering)
        self.trace = partition_trace(self.tp[0], self.tp[1], self.route.name, __version__)

    @property
    def load(self) -> int:
        """Events held in memory for this partition: in flight plus staged."""
        return self.offsets.in_flight + len(self.staged)

    def new_committable(self) -> int | None:
        """The committable offset, or None if there is none or it is committed already."""
        offset = self.offsets.committable()
        return None if offset is None or offset == self.committed else offset

    def stage(self, offset: int, outputs: list[OutRecord]) -> None:
        """Exactly-once: keep the event's outputs until the transaction commits."""
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
