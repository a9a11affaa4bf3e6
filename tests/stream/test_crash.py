"""Crash safety: `sluicegate run` killed with SIGKILL at random moments loses nothing.

A processor subprocess is killed many times mid-stream and restarted; a last run is
stopped with SIGTERM (graceful drain and commit). Then every input offset must be found
in the output or the DLQ: at least once by default, exactly once with read_committed
in exactly-once mode. Each mode runs twice: with a handler that is awaited (10 ms per
event, one event at a time per partition: the general path) and with one that answers
at once (the fast path, whole polled runs handled, acknowledged and committed in bulk).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from stream.config import KafkaSettings
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce
from tests.stream.harness import source_of

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
PARTITIONS, KILLS = 3, 6
# Enough events that the kills come mid-stream on either path.
EVENTS = {"awaited": 4500, "fast": 120000}


def write_config(
    path: Path, kafka: KafkaSettings, *, src: str, out: str, dlq: str, eos: bool, fast: bool
) -> None:
    guarantee = "exactly-once" if eos else "at-least-once"
    # The fast path: an instant handler, any order. The awaited one: 10 ms per event.
    ordering, delay_ms = ("unordered", 0) if fast else ("partition", 10)
    path.write_text(f"""
[kafka]
bootstrap_servers = "{kafka.bootstrap_servers}"
group_id = "{kafka.group_id}"
# Static membership: a restarted instance takes its partitions back at once instead
# of waiting for the session of the killed one to time out.
consumer_extra = {{ "group.instance.id" = "crash-{kafka.group_id}", "session.timeout.ms" = 10000 }}

[processing]
guarantee = "{guarantee}"
commit_interval_ms = 300
transactional_id = "txn-{kafka.group_id}"
max_in_flight = 400
max_in_flight_per_partition = 150
max_poll_records = 50

[dlq]
topic = "{dlq}"

[metrics]
enabled = false

[log]
format = "console"

[[routes]]
name = "crash"
input_topics = ["{src}"]
output_topic = "{out}"
ordering = "{ordering}"
options = {{ delay_ms = {delay_ms} }}
""")


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "stream", "run", "-c", str(config)],
            cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip


def committed_total(kafka: KafkaSettings, topic: str) -> int:
    # read_uncommitted: do not wait for offsets of a transaction a kill left open.
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": kafka.group_id,
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return sum(max(tp.offset, 0) for tp in parts)
    finally:
        consumer.close()


def inputs(n: int) -> list[tuple[bytes | None, bytes]]:
    records: list[tuple[bytes | None, bytes]] = []
    for i in range(n):
        value = b"not json %d" % i if i % 97 == 0 else orjson.dumps({"id": i})
        records.append((b"k%d" % (i % 31), value))
    return records


# Each commit mode with each path; `make test` runs two of the four (one of each mode,
# one of each path), `make reliability` all of them.
@pytest.mark.parametrize(
    ("eos", "path"),
    [
        pytest.param(False, "awaited", id="at-least-once-awaited"),
        pytest.param(True, "fast", id="exactly-once-fast"),
        pytest.param(False, "fast", id="at-least-once-fast", marks=pytest.mark.reliability),
        pytest.param(True, "awaited", id="exactly-once-awaited", marks=pytest.mark.reliability),
    ],
)
def test_sigkill_loop_loses_nothing(
    eos: bool, path: str, kafka: KafkaSettings, make_topic: TopicFactory, tmp_path: Path
) -> None:
    """Killed with SIGKILL six times mid-stream, then stopped with SIGTERM: every input
    offset ends in the output or the DLQ (exactly once each in exactly-once mode)."""
    src, out, dlq = make_topic("in", PARTITIONS), make_topic("out", PARTITIONS), make_topic("dlq")
    events = EVENTS[path]
    produce(kafka.bootstrap_servers, src, inputs(events))
    config, log = tmp_path / "crash.toml", tmp_path / "processor.log"
    write_config(config, kafka, src=src, out=out, dlq=dlq, eos=eos, fast=path == "fast")
    rng = random.Random(uuid.uuid4().int)
    log.touch()

    for _ in range(KILLS):
        before = len(log.read_text())
        proc = start(config, log)
        if path == "fast":  # it moves fast once assigned: kill soon after that
            wait_for_assignment(proc, log, before)
            time.sleep(rng.uniform(0.05, 0.5))
        else:
            time.sleep(rng.uniform(0.8, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-20000:]
    progress_before_last = committed_total(kafka, src)

    before = len(log.read_text())
    proc = start(config, log)
    deadline = time.monotonic() + 120
    wait_for_assignment(proc, log, before)
    while committed_total(kafka, src) < events and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    assert code == 0, f"exit {code}: " + log.read_text()[-3000:]
    assert committed_total(kafka, src) == events
    assert progress_before_last < events, "the kills came too late to interrupt anything"

    isolation = "read_committed" if eos else "read_uncommitted"
    enriched = consume(kafka.bootstrap_servers, out, None, isolation=isolation)
    dead = consume(kafka.bootstrap_servers, dlq, None, isolation=isolation)
    seen = collections.Counter(source_of(r) for r in enriched + dead)
    missing = {(src, p, o) for p in range(PARTITIONS) for o in range(per_partition(kafka, src, p))}
    missing -= set(seen)
    assert not missing, f"{len(missing)} input offsets lost"
    if eos:
        dupes = {k: n for k, n in seen.items() if n > 1}
        assert not dupes, f"{len(dupes)} outputs duplicated under exactly-once"
        assert len(seen) == events


def wait_for_assignment(proc: subprocess.Popen[bytes], log: Path, since: int) -> None:
    """Until the processor started at log offset ``since`` says it got partitions."""
    deadline = time.monotonic() + 60
    while "assigned [" not in log.read_text()[since:] and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)


def per_partition(kafka: KafkaSettings, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "watermarks"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1])
    finally:
        consumer.close()
