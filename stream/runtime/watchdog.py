"""The progress watchdog: a partition with events in flight and none finished for
``processing.stall_timeout_s`` is stuck, and says so (``/readyz``, a metric, a log line).

A stall must never look healthy: liveness is an invariant like no loss. Idle partitions
(nothing in flight) are never stuck; their clock is reset while they idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from stream.runtime.partition import TP, Partition

log = logging.getLogger("stream.runtime")


@dataclass(frozen=True)
class Stall:
    """One stuck partition: how long it has made no progress, with what in flight."""

    tp: TP
    seconds: float
    in_flight: int
    oldest_offset: int | None

    def __str__(self) -> str:
        topic, partition = self.tp
        oldest = "" if self.oldest_offset is None else f" (oldest offset {self.oldest_offset})"
        return (
            f"partition {topic}[{partition}] is stuck: {self.in_flight} events in flight"
            f"{oldest}, none finished for {self.seconds:.0f}s"
        )


class Watchdog:
    def __init__(self, stall_timeout_s: float) -> None:
        self.timeout_s = stall_timeout_s
        self.stalls: dict[TP, Stall] = {}

    def check(self, parts: Iterable[Partition], now: float | None = None) -> None:
        """Look at every partition (cheap: a few reads each); log a stall once when it
        starts and once when it ends."""
        now = time.monotonic() if now is None else now
        stalls: dict[TP, Stall] = {}
        for part in parts:
            in_flight = part.offsets.in_flight
            if in_flight == 0:
                part.progressed_at = now
                continue
            quiet = now - part.progressed_at
            if quiet >= self.timeout_s:
                stalls[part.tp] = Stall(part.tp, quiet, in_flight, part.offsets.committable())
        for tp, stall in stalls.items():
            if tp not in self.stalls:
                log.warning("%s; processing.stall_timeout_s is %gs", stall, self.timeout_s)
        for tp in self.stalls.keys() - stalls.keys():
            log.info("partition %s[%d] moves again", *tp)
        self.stalls = stalls
