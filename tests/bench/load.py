"""Traffic in and results out, each on a thread of its own: a producer that keeps a steady
rate, and a reader that matches every output to its input.

The producer remembers the broker's append time of every input (its delivery report
carries it: the topics use ``LogAppendTime``); the reader takes each output's append
time and its ``sluicegate.source.*`` trace headers, so an event's latency is the
broker's clock read twice, and nothing on the benchmark's side (a late thread, a slow
poll) can add to it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from stream.kafka.headers import (
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    header,
    message_headers,
)
from tests.bench.harness import ProcessorProcess, metric

Source = tuple[str, int, int]  # topic, partition, offset of an input


@dataclass(frozen=True)
class Stream:
    """Events for one input topic, and its share of the traffic."""

    topic: str
    events: Iterator[tuple[bytes | None, bytes]]
    weight: float = 1.0


class Pacer(threading.Thread):
    """Produces ``rate`` events a second from ``streams`` (picked by weight) until
    ``stop()``; ``appended`` maps each acknowledged input to its append time (ms)."""

    def __init__(self, bootstrap: str, streams: Sequence[Stream], rate: float, seed: int = 1):
        super().__init__(name="pacer", daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1,
                                  "enable.idempotence": True})  # fmt: skip
        self.streams = list(streams)
        self.rate = rate
        self.rng = random.Random(seed)
        self.appended: dict[Source, int] = {}
        self.sent = 0
        self.failed = 0
        self.most_behind_s = 0.0  # how far the pacer ever fell behind its schedule
        self._halt = threading.Event()

    def stop(self) -> None:
        """Stop producing (every event sent so far is acknowledged when it returns)."""
        self._halt.set()
        if self.is_alive():
            self.join()

    def close(self) -> None:
        self.stop()
        self.producer.close()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            return
        self.appended[(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)] = (
            msg.timestamp()[1]
        )

    def produce_one(self) -> None:
        weights = [s.weight for s in self.streams]
        stream = self.rng.choices(self.streams, weights=weights)[0]
        key, value = next(stream.events)
        self.producer.produce(stream.topic, value=value, key=key, on_delivery=self._delivered)
        self.sent += 1

    def run(self) -> None:
        interval = 1.0 / self.rate
        due = time.monotonic()
        while not self._halt.is_set():
            now = time.monotonic()
            if now < due:
                self.producer.poll(min(due - now, 0.05))
                continue
            self.most_behind_s = max(self.most_behind_s, now - due)
            self.produce_one()
            self.producer.poll(0)
            due += interval
        if self.producer.flush(30):
            raise RuntimeError("the pacer could not deliver every input within 30 s")

    def fill(self, n: int) -> None:
        """``n`` events as fast as they go (a backlog), not on the thread."""
        for _ in range(n):
            self.produce_one()
            self.producer.poll(0)
        if self.producer.flush(60):
            raise RuntimeError(f"could not deliver the {n} backlog events within 60 s")


@dataclass
class Arrival:
    """One output: when the broker appended it, its input's latency, what answered it."""

    at_ms: int
    latency_ms: int
    route: str
    tier: str
    partition: int = -1  # the input's


@dataclass
class Tally:
    arrivals: list[Arrival] = field(default_factory=list)
    duplicates: int = 0
    unmatched: int = 0  # outputs whose input the pacer did not produce (must stay 0)


class Outputs(threading.Thread):
    """Reads the output topics from their start; matches each output with its input."""

    def __init__(self, bootstrap: str, partitions: dict[str, int], pacer: Pacer):
        super().__init__(name="outputs", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        self.consumer.assign(
            [
                TopicPartition(t, p, OFFSET_BEGINNING)
                for t, n in partitions.items()
                for p in range(n)
            ]
        )
        self.pacer = pacer
        self.tally = Tally()
        self.tiers: Counter[str] = Counter()  # outputs so far by the tier that answered
        self._seen: set[Source] = set()
        self._waiting: list[tuple[Source, int, str, str]] = []
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join()
        self.consumer.close()

    @property
    def count(self) -> int:
        return len(self._seen)

    def _match(self, source: Source, at_ms: int, route: str, tier: str) -> bool:
        sent = self.pacer.appended.get(source)
        if sent is None:
            return False
        with self.lock:
            self.tally.arrivals.append(Arrival(at_ms, at_ms - sent, route, tier, source[1]))
            self.tiers[tier] += 1
        return True

    def run(self) -> None:
        while not self._halt.is_set():
            for msg in self.consumer.consume(500, 0.2):
                if msg.error() is not None:
                    continue
                headers = message_headers(msg)
                topic = (header(headers, SOURCE_TOPIC) or b"").decode()
                partition = int(header(headers, SOURCE_PARTITION) or -1)
                offset = int(header(headers, SOURCE_OFFSET) or -1)
                source = (topic, partition, offset)
                if source in self._seen:
                    self.tally.duplicates += 1
                    continue
                self._seen.add(source)
                enrichment = orjson.loads(msg.value() or b"{}").get("enrichment", {})
                route, tier = enrichment.get("route", "?"), enrichment.get("tier", "?")
                at_ms = msg.timestamp()[1]
                if not self._match(source, at_ms, route, tier):
                    self._waiting.append((source, at_ms, route, tier))
            # A delivery report may be handled after its output is read: match it later.
            self._waiting = [w for w in self._waiting if not self._match(*w)]
        self.tally.unmatched = len(self._waiting)

    def since(self, start: int) -> list[Arrival]:
        """Arrivals matched after the first ``start`` ones."""
        with self.lock:
            return self.tally.arrivals[start:]


def percentile(values: Sequence[int] | Sequence[float], q: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def settle(
    proc: ProcessorProcess, pacer: Pacer, reader: Outputs, timeout: float
) -> tuple[float, float]:
    """Wait until every acknowledged input has its output or was dead-lettered (the
    processor's count); returns the seconds it took and the dead-lettered events."""
    started = time.monotonic()
    while True:
        dead = metric(proc.metrics(), "sluicegate_events_total", outcome="dead_lettered")
        missing = len(pacer.appended) - reader.count - dead
        if missing <= 0:
            return time.monotonic() - started, dead
        if not proc.alive():
            raise RuntimeError(f"the processor exited:\n{proc.log_tail()}")
        if time.monotonic() - started > timeout:
            raise RuntimeError(
                f"{missing:.0f} events still without an output {timeout:.0f}s after the "
                "producer stopped"
            )
        time.sleep(0.25)
