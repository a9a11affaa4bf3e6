"""What the processor knows about one assigned partition while it owns it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from handlers.base import Handler
from schemas.records import Headers, OutRecord, SourceRecord
from stream import __version__
from stream.config import RouteSettings
from stream.dispatch import Lanes
from stream.kafka.headers import partition_trace
from stream.offsets import PartitionOffsets

TP = tuple[str, int]


@dataclass(frozen=True)
class Route:
    """A configured route with its handler instance."""

    settings: RouteSettings
    handler: Handler

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

    def take_committable(self) -> tuple[int, list[OutRecord]] | None:
        """The new committable offset and the staged outputs below it, or None."""
        offset = self.offsets.committable()
        if offset is None or offset == self.committed:
            return None
        ready = sorted(o for o in self.staged if o < offset)
        return offset, [out for o in ready for out in self.staged[o]]

    def committed_to(self, offset: int) -> int:
        """Forget staged outputs below ``offset`` (now committed); return how many."""
        ready = [o for o in self.staged if o < offset]
        for o in ready:
            del self.staged[o]
        self.committed = offset
        return len(ready)


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
