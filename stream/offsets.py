"""Per-partition offset bookkeeping: what may be committed without losing anything.

Events finish out of order (unordered and key modes), but Kafka keeps one committed
offset per partition. ``PartitionOffsets`` therefore commits only the contiguous prefix
of finished offsets: an event is never skipped because a later one finished first.
Pure, no I/O; property-tested in tests/stream/test_offsets.py.
"""

from __future__ import annotations

import heapq


class PartitionOffsets:
    """Tracks started and done offsets of one partition.

    ``committable()`` is the offset to commit (Kafka's convention: the next offset to
    read), i.e. one past the contiguous done prefix, or None before anything started.
    Offsets that never arrive (compaction, transaction markers) do not block the prefix.
    """

    __slots__ = ("_heap", "_pending", "_started_max")

    def __init__(self) -> None:
        self._pending: set[int] = set()  # started, not yet done
        self._heap: list[int] = []  # the pending offsets, min first (lazily cleaned)
        self._started_max: int | None = None

    def started(self, offset: int) -> None:
        """Record that ``offset`` was received; offsets must arrive in increasing order."""
        if self._started_max is not None and offset <= self._started_max:
            raise ValueError(f"offset {offset} started after {self._started_max}")
        self._started_max = offset
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)

    def seen(self, offset: int) -> bool:
        """True if ``offset`` is at or below one already started: a redelivery."""
        return self._started_max is not None and offset <= self._started_max

    def done(self, offset: int) -> None:
        """Record that ``offset`` has finished (its outputs are acknowledged)."""
        try:
            self._pending.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not in flight") from None
        heap = self._heap
        while heap and heap[0] not in self._pending:
            heapq.heappop(heap)

    def committable(self) -> int | None:
        """The next offset to read after the contiguous done prefix, or None."""
        if self._started_max is None:
            return None
        return self._heap[0] if self._heap else self._started_max + 1

    @property
    def in_flight(self) -> int:
        """Started and not yet done."""
        return len(self._pending)
