"""Per-partition offset bookkeeping: what may be committed without losing anything.

Events finish out of order (unordered and key modes), but Kafka keeps one committed
offset per partition. ``PartitionOffsets`` therefore commits only the contiguous prefix
of finished offsets: an event is never skipped because a later one finished first.
Pure, no I/O; property-tested in tests/stream/runtime/test_offsets.py.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Collection
from itertools import islice


class PartitionOffsets:
    """Tracks started and done offsets of one partition.

    ``committable()`` is the offset to commit (Kafka's convention: the next offset to
    read), i.e. one past the contiguous done prefix, or None before anything started.
    Offsets that never arrive (compaction, transaction markers) do not block the prefix.

    Offsets start in increasing order, so the started ones form a sorted queue: the
    first one still pending is the front of that queue once the done ones in front of it
    are dropped, which costs O(1) per offset, and whole batches go in and out at once.
    """

    __slots__ = ("_order", "_pending", "_started_max")

    def __init__(self) -> None:
        self._pending: set[int] = set()  # started, not yet done
        # The started offsets, increasing; the done ones at its front are dropped.
        self._order: deque[int] = deque()
        self._started_max: int | None = None

    def started(self, offset: int) -> None:
        """Record that ``offset`` was received; offsets must arrive in increasing order."""
        if self._started_max is not None and offset <= self._started_max:
            raise ValueError(f"offset {offset} started after {self._started_max}")
        self._started_max = offset
        self._pending.add(offset)
        self._order.append(offset)

    def started_many(self, offsets: list[int]) -> None:
        """``started`` for each of ``offsets``, which must be strictly increasing."""
        if not offsets:
            return
        if self._started_max is not None and offsets[0] <= self._started_max:
            raise ValueError(f"offset {offsets[0]} started after {self._started_max}")
        if not increasing(offsets):
            raise ValueError("offsets must be strictly increasing")
        self._started_max = offsets[-1]
        self._pending.update(offsets)
        self._order.extend(offsets)

    def seen(self, offset: int) -> bool:
        """True if ``offset`` is at or below one already started: a redelivery."""
        return self._started_max is not None and offset <= self._started_max

    @property
    def highest(self) -> int:
        """The highest offset started, or -1."""
        return -1 if self._started_max is None else self._started_max

    def done(self, offset: int) -> None:
        """Record that ``offset`` has finished (its outputs are acknowledged)."""
        try:
            self._pending.remove(offset)
        except KeyError:
            raise ValueError(f"offset {offset} is not in flight") from None
        self._drop_done()

    def done_many(self, offsets: Collection[int]) -> None:
        """``done`` for each of ``offsets`` (distinct, all in flight)."""
        pending = self._pending
        before = len(pending)
        pending.difference_update(offsets)
        if before - len(pending) != len(offsets):
            raise ValueError("some of these offsets are not in flight")
        self._drop_done()

    def _drop_done(self) -> None:
        order, pending = self._order, self._pending
        while order and order[0] not in pending:
            order.popleft()

    def committable(self) -> int | None:
        """The next offset to read after the contiguous done prefix, or None."""
        if self._started_max is None:
            return None
        return self._order[0] if self._order else self._started_max + 1

    @property
    def in_flight(self) -> int:
        """Started and not yet done."""
        return len(self._pending)


def increasing(offsets: list[int]) -> bool:
    """True if ``offsets`` is strictly increasing (compared in C, not a Python loop)."""
    return all(map(operator.lt, offsets, islice(offsets, 1, None)))
