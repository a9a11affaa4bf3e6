"""Ordering lanes: which events of a partition may run now, and which wait.

``unordered``: every event runs at once. ``key``: events with one key run one at a time,
in offset order; different keys run in parallel (records without a key are unordered).
``partition``: one event at a time per partition. Pure; no I/O, no asyncio.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from schemas.records import SourceRecord
from stream.config import Ordering

_FREE: Final = object()  # a record that waits for nothing
_PARTITION: Final = object()  # the single lane of partition mode


class Lanes:
    """The waiting lines of one partition under one ordering mode."""

    __slots__ = ("_busy", "ordering")

    def __init__(self, ordering: Ordering) -> None:
        self.ordering = ordering
        # lane -> records waiting behind the one that runs; a present lane is busy
        self._busy: dict[object, deque[SourceRecord]] = {}

    def _lane(self, record: SourceRecord) -> object:
        if self.ordering == "unordered":
            return _FREE
        if self.ordering == "partition":
            return _PARTITION
        return _FREE if record.key is None else record.key

    def admit(self, record: SourceRecord) -> bool:
        """True if ``record`` may start now; otherwise it waits in its lane."""
        lane = self._lane(record)
        if lane is _FREE:
            return True
        waiting = self._busy.get(lane)
        if waiting is None:
            self._busy[lane] = deque()
            return True
        waiting.append(record)
        return False

    def finished(self, record: SourceRecord) -> SourceRecord | None:
        """``record`` is out of the way; return the next record of its lane to start."""
        lane = self._lane(record)
        if lane is _FREE:
            return None
        waiting = self._busy.get(lane)
        if waiting:
            return waiting.popleft()
        self._busy.pop(lane, None)
        return None

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._busy.values())
