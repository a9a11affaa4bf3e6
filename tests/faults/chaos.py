"""Backlog chaos: a backlog produced before start, worked off through every fault at once.

A broker of its own; thousands of events produced before the first processor starts and
more arriving throughout. Small in-flight bounds make partitions pause under the
backlog. Then: a second member joins while partitions are paused and leaves again (so
paused partitions are revoked and assigned back), the first member is killed with
SIGKILL twice and restarted, and the broker itself is stopped and started again. At the
end every input offset must be in the output or the DLQ (read_committed: none twice in
exactly-once mode), counted from the topics by a separate client.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.kafka import broker as local_kafka
from tests.faults.kafka_faults import PARTITIONS, _wait, event, sections
from tests.faults.lab import (
    REPO,
    Feeder,
    Lab,
    ProcessorProcess,
    Tally,
    account,
    committed,
    produce,
    topics,
    write_config,
)
from tests.faults.model_faults import review


def _route(src: str, out: str, ordering: str, model: bool) -> dict[str, Any]:
    if model:  # every event needs the model: no local tier, no cache hits (unique texts)
        return {"name": "reviews", "input_topics": [src], "output_topic": out,
                "handler": "sentiment", "ordering": ordering,
                "options": {"local_tier": False}}  # fmt: skip
    return {"name": "echo", "input_topics": [src], "output_topic": out, "ordering": ordering}


class Simulator:
    """``sluicegate simulate-nano`` as a process of its own, on a free port."""

    def __init__(self, log: Path) -> None:
        self.port = local_kafka.free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream", "simulate-nano", "--port", str(self.port),
                 "--latency-median-ms", "40", "--seed", "7"],
                cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while "serving" not in log.read_text(errors="replace"):
            assert self.proc.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _faults(
    broker: local_kafka.Broker,
    first: ProcessorProcess,
    second: ProcessorProcess,
    progress: Callable[[], int],
    backlog: int,
) -> local_kafka.Broker:
    """The sequence of faults, while events keep arriving; returns the restarted broker."""
    first.start().wait_for("assigned [")
    _wait(lambda: progress() >= backlog // 10, 120, first, "progress")
    second.start().wait_for("assigned [")  # joins while the first one's are paused
    first.kill()
    first.start().wait_for("assigned [")
    at = progress()
    _wait(lambda: progress() > at, 120, first, "progress after the first kill")
    assigned = first.output().count("assigned [")
    assert second.terminate() == 0, second.output()[-3000:]  # leaves: back to the first
    _wait(lambda: first.output().count("assigned [") > assigned, 60, first, "partitions back")
    first.kill()
    first.start().wait_for("assigned [")
    local_kafka.halt(broker)
    time.sleep(5)
    return local_kafka.restart(broker)


def backlog_chaos(
    lab: Lab, *, ordering: str, model: bool, eos: bool = False, backlog: int = 5000
) -> Tally:
    kind = "model-backed" if model else "instant"
    mode = "exactly-once" if eos else "at-least-once"
    tally = Tally(
        f"chaos, {ordering} ordering, {kind} handler, {mode}: {backlog} events waiting at "
        "start, a member joins and leaves while partitions are paused, two SIGKILLs, a "
        "broker restart"
    )
    began = time.monotonic()
    broker = local_kafka.start(attached=True)
    sim = Simulator(lab.workdir / "simulator.log") if model else None
    members: list[ProcessorProcess] = []
    try:
        bootstrap, group = broker.bootstrap, f"g-{uuid.uuid4().hex[:12]}"
        value = review if model else event
        with topics(bootstrap) as make:
            src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
            produce(bootstrap, src, value, backlog)

            def config(name: str) -> Path:
                settings = sections(
                    bootstrap, group, dlq, guarantee=mode, transactional_id=f"{group}-{name}",
                    max_in_flight=300, max_in_flight_per_partition=100, max_poll_records=50,
                    shutdown_timeout_s=10,
                )  # fmt: skip
                if sim is not None:
                    settings["model"] = {"base_url": sim.url, "api_key": "sim"}
                return write_config(lab.workdir / f"{name}.toml", settings,
                                    [_route(src, out, ordering, model)])  # fmt: skip

            first = ProcessorProcess(config("a"), lab.workdir / "a.log")
            second = ProcessorProcess(config("b"), lab.workdir / "b.log")
            members += [first, second]

            def progress() -> int:
                return committed(bootstrap, group, src, PARTITIONS)

            with Feeder(bootstrap, src, value, rate=50, start=backlog) as feed:
                broker = _faults(broker, first, second, progress, backlog)
                total = feed.stop()
            _wait(lambda: progress() >= total, 300, first, "all committed")
            log = first.output()
            code = first.terminate()
            account(tally, bootstrap, src, out, dlq,
                    isolation="read_committed" if eos else "read_uncommitted")  # fmt: skip
    finally:
        for member in members:
            member.ensure_gone()
        if sim is not None:
            sim.stop()
        local_kafka.stop(broker)
    assert code == 0, f"exit {code}: {log[-3000:]}"
    tally.facts = {"events": total, "exit_code": code,
                   "stalls_reported": log.count("is stuck")}  # fmt: skip
    tally.notes = f"{total} events; {tally.duplicated} processed twice" + (
        " (at-least-once)" if not eos else ""
    )
    tally.seconds = time.monotonic() - began
    return tally
