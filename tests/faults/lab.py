"""What every fault scenario needs: topics, a steady producer, a processor process, and
the accounting that says what became of each input offset.

The accounting is by source offset: every output and every DLQ record carries the
topic, partition and offset of its input (``sluicegate.source.*`` headers), so an input
offset found in neither is lost, whatever the counters of the processor say.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.config import KafkaSettings
from stream.kafka.headers import message_headers
from tests.kafkautil import Record
from tests.stream.harness import source_of

REPO = Path(__file__).resolve().parents[2]
# librdkafka's own logs of the helpers' clients (a broker that is away on purpose makes
# them complain), kept apart from the processor's.
CLIENT_LOG = logging.getLogger("tests.faults.clients")
Source = tuple[str, int, int]  # (topic, partition, offset) of an input event
Value = Callable[[int], tuple[bytes | None, bytes | None]]  # event number -> (key, value)


@dataclass
class Tally:
    """One row of RELIABILITY.md: what went in, where it ended, and what was measured."""

    name: str
    events_in: int = 0
    out: int = 0  # distinct input offsets found in the output topic
    dead: int = 0  # distinct input offsets found in the DLQ topic
    lost: int = 0  # input offsets found in neither
    duplicated: int = 0  # outputs beyond the first for one input offset
    cases: int | None = None  # bad input: how many generated cases
    facts: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Lab:
    """Where a scenario runs: a broker, a scratch directory and (model faults) the
    simulator's ``/v1`` URL."""

    bootstrap: str
    workdir: Path
    simulator: str = ""

    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap, group_id=f"g-{uuid.uuid4().hex[:12]}"
        )


class TopicMaker(Protocol):
    def __call__(self, prefix: str, partitions: int = 1) -> str: ...


@contextmanager
def topics(bootstrap: str) -> Iterator[TopicMaker]:
    """A factory of topics with random names, all deleted at the end."""
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=CLIENT_LOG)
    created: list[str] = []

    def make(prefix: str, partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        for future in admin.create_topics([NewTopic(name, num_partitions=partitions)]).values():
            future.result(30)
        created.append(name)
        return name

    try:
        yield make
    finally:
        if created:
            for future in admin.delete_topics(created, operation_timeout=30).values():
                try:
                    future.result(30)
                except Exception:  # noqa: BLE001 - a broker that is gone keeps its topics
                    break


class Feeder:
    """Produces events ``value(0)``, ``value(1)``, ... to a topic on a thread of its own,
    at ``rate`` per second, until ``stop()``; every one must be acknowledged. It keeps
    producing while the broker is down: librdkafka holds the records until it is back."""

    def __init__(self, bootstrap: str, topic: str, value: Value, rate: float, start: int = 0):
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True}, logger=CLIENT_LOG
        )
        self._topic, self._value, self._rate = topic, value, rate
        self.sent = start
        self._errors: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *_exc: object) -> None:
        if kind is None:
            self.stop()
        elif not self._stop.is_set():  # failing already: no checks that would hide why
            self._stop.set()
            self._thread.join()
            self._producer.flush(5)

    def _run(self) -> None:
        began, first = time.monotonic(), self.sent
        while not self._stop.is_set():
            due = first + int((time.monotonic() - began) * self._rate)
            while self.sent < due:
                key, value = self._value(self.sent)
                self._producer.produce(self._topic, value=value, key=key, on_delivery=self._report)
                self.sent += 1
            self._producer.poll(0.02)

    def _report(self, error: object, _msg: object) -> None:
        if error is not None:
            self._errors.append(error)

    def stop(self, flush_s: float = 120.0) -> int:
        """Stop producing; wait until all is acknowledged; return how many were sent."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            left = self._producer.flush(flush_s)
            self._producer.close()
            assert left == 0, f"{left} input events not acknowledged"
            assert self._errors == [], self._errors[:3]
        return self.sent


def produce(bootstrap: str, topic: str, value: Value, n: int, start: int = 0) -> None:
    """Produce events ``start .. start+n-1`` and wait until all are acknowledged."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True}, logger=CLIENT_LOG
    )
    errors: list[object] = []
    for i in range(start, start + n):
        key, val = value(i)
        producer.produce(topic, value=val, key=key, on_delivery=lambda e, _m: errors.append(e))
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    producer.close()
    assert [e for e in errors if e is not None] == []


def end_offsets(bootstrap: str, topic: str, *, isolation: str = "read_uncommitted") -> list[int]:
    """Per partition, the offset after the last record (read_committed: after the last
    record of a committed transaction, the last stable offset)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "watermarks", "isolation.level": isolation},
        logger=CLIENT_LOG,
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return [
            int(consumer.get_watermark_offsets(TopicPartition(topic, p), 10, cached=False)[1])
            for p in sorted(meta.partitions)
        ]
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """How many input events the group has committed, over all partitions."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_uncommitted"},
        logger=CLIENT_LOG,
    )
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, *, isolation: str = "read_uncommitted") -> list[Record]:
    """Every record of ``topic`` up to its end offsets now (read_committed: committed
    transactions only)."""
    ends = end_offsets(bootstrap, topic, isolation=isolation)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        },
        logger=CLIENT_LOG,
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(len(ends))])
    records: list[Record] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            positions = consumer.position([TopicPartition(topic, p) for p in range(len(ends))])
            if all(max(tp.offset, 0) >= end for tp, end in zip(positions, ends, strict=True)):
                break
            records.extend(
                Record(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                       msg.key(), msg.value(), message_headers(msg))
                for msg in consumer.consume(1000, 0.5)
                if msg.error() is None
            )  # fmt: skip
        else:
            raise AssertionError(f"could not read {topic} to its end offsets {ends}")
    finally:
        consumer.close()
    return records


def account(
    tally: Tally, bootstrap: str, src: str, out: str, dlq: str, *, isolation: str
) -> tuple[collections.Counter[Source], collections.Counter[Source]]:
    """Fill ``tally``'s counts from the topics: every input offset of ``src`` against the
    outputs and dead letters that name it. Returns (outputs, dead letters) per source."""
    inputs = {(src, p, o) for p, end in enumerate(end_offsets(bootstrap, src)) for o in range(end)}
    enriched = collections.Counter(
        source_of(r) for r in read_topic(bootstrap, out, isolation=isolation)
    )
    dead = collections.Counter(
        source_of(r)
        for r in read_topic(bootstrap, dlq, isolation=isolation)
        if source_of(r)[0] == src
    )
    tally.events_in = len(inputs)
    tally.out = len(enriched.keys() & inputs)
    tally.dead = len(dead.keys() & inputs)
    tally.lost = len(inputs - enriched.keys() - dead.keys())
    both = enriched + dead
    tally.duplicated = sum(n - 1 for n in both.values() if n > 1)
    return enriched, dead


def rss_mib(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MiB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- `sluicegate run` as a process of its own ------------------------------------------


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_config(
    path: Path, sections: Mapping[str, Mapping[str, object]], routes: list[dict[str, object]]
) -> Path:
    """A config file for ``sluicegate run``: ``[section]`` tables and ``[[routes]]``."""
    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
        lines.append("")
    for route in routes:
        lines.append("[[routes]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in route.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


class ProcessorProcess:
    """``python -m stream run -c CONFIG`` with its output appended to a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> ProcessorProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream", "run", "-c", str(self.config)],
                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        """What this run (since the last ``start``) logged."""
        with self.log.open("rb") as handle:
            handle.seek(self._log_start)
            return handle.read().decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        assert self.alive(), f"the processor exited: {self.output()[-3000:]}"

    def wait_for(self, text: str, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while text not in self.output():
            self.check_alive()
            assert time.monotonic() < deadline, (
                f"no {text!r} in {limit_s}s: {self.stacks()}\n{self.output()[-3000:]}"
            )
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, limit_s: float = 60.0) -> int:
        """SIGTERM (drain, commit, close) and the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(limit_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"no exit within {limit_s:.0f}s of SIGTERM\n{self.stacks()}\n"
                f"{self.output()[-4000:]}"
            ) from None

    def stacks(self) -> str:
        """Every thread's Python stack (py-spy, when it is installed), to say where a
        process that does not move waits."""
        spy = Path(sys.executable).with_name("py-spy")
        if self.proc is None or self.proc.poll() is not None or not spy.exists():
            return ""
        dump = subprocess.run([str(spy), "dump", "--pid", str(self.proc.pid)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        return dump.stdout + dump.stderr

    def ensure_gone(self) -> None:
        if self.alive():
            self.kill()
