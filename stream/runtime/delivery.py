"""Counting the acknowledgements of a group of outputs: one event's, or a whole batch's.

librdkafka reports every output's delivery by calling ``report`` on whichever thread
polls the producer. ``report`` only appends to lists, which is atomic under the GIL, so
no lock is taken per output. When the last expected report is in, the delivery queues
itself on ``ready``, which the sink drains on the event loop: ``on_done`` runs there,
with the failures, and only then may the outputs' offsets be committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Message

from stream.errors import KafkaError
from stream.kafka.errors import map_kafka_error

# (the output's index in its group, -1 if not bound; the error; the message as
# reported: None if the output was refused before it was queued)
Failure = tuple[int, KafkaError, Message | None]
# ``expected`` while outputs are still being queued: no count of reports matches it.
OPEN = 1 << 62


class Delivery:
    __slots__ = ("expected", "failures", "fired", "on_done", "ready", "reports")

    def __init__(
        self,
        ready: deque[Delivery],
        on_done: Callable[[list[Failure]], None],
        expected: int = OPEN,
    ) -> None:
        """``expected``: how many reports to wait for; leave it OPEN while queueing an
        unknown number of outputs, then ``seal`` the delivery."""
        self.ready = ready
        self.on_done = on_done
        self.expected = expected
        self.reports: list[None] = []
        self.failures: list[Failure] = []
        self.fired = False

    def report(self, error: RdKafkaError | None, msg: Message, index: int = -1) -> None:
        """One output's delivery report (librdkafka's callback, any polling thread).

        A delivery report carries the output's key and value but not its headers, nor
        anything of ours: bind ``index`` (``partial(report, index=i)``) to know which
        output failed, or tell the outputs apart by key and value (the processor's fast
        path does, see ``stream.runtime.processor._failed_in_run``, saving a ``partial`` per
        output)."""
        if error is not None:
            self.failures.append((index, map_kafka_error(error, "delivering"), msg))
        reports = self.reports
        reports.append(None)
        if len(reports) == self.expected:
            self.ready.append(self)

    def seal(self, expected: int) -> None:
        """(loop) All outputs are queued: ``expected`` reports complete the delivery."""
        self.expected = expected
        # The last report may have come before the count was known. Either side may then
        # queue the delivery (each writes, then reads what the other writes); ``fire``
        # runs ``on_done`` once.
        if len(self.reports) >= expected:
            self.ready.append(self)

    def refused(self, error: KafkaError, unsent: int) -> None:
        """(loop) The last ``unsent`` of the expected outputs were never queued: no
        report will come for them."""
        self.failures.append((-1, error, None))
        self.seal(self.expected - unsent)

    def fire(self) -> None:
        """(loop) Run ``on_done`` with the failures, once."""
        if not self.fired:
            self.fired = True
            self.on_done(self.failures)
