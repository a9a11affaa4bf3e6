"""Faults of Kafka and of the processor's process: the broker stopped and restarted
under a running processor; the processor killed with SIGKILL, at random moments or
while an exactly-once transaction is open.

The processor runs as ``sluicegate run`` in a process of its own, on the ``echo`` route
(a little work per event, so that the stream is still flowing when the fault hits). A
few inputs are not JSON, so dead letters cross the fault too.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ops.kafka import broker as local_kafka
from tests.faults.lab import (
    Feeder,
    Lab,
    ProcessorProcess,
    Tally,
    account,
    committed,
    end_offsets,
    produce,
    read_topic,
    rss_mib,
    topics,
    write_config,
)

PARTITIONS = 3


def event(i: int) -> tuple[bytes | None, bytes | None]:
    """Event ``i``: a JSON object, or (one in 97) bytes that are not JSON."""
    value = b"not json %d" % i if i % 97 == 0 else orjson.dumps({"id": i})
    return b"k%d" % (i % 31), value


def sections(bootstrap: str, group: str, dlq: str, **processing: Any) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "processing": {"commit_interval_ms": 500, **processing},
        "dlq": {"topic": dlq},
        "metrics": {"enabled": False},
        "log": {"format": "console"},
    }


def echo_route(src: str, out: str, delay_ms: float) -> dict[str, Any]:
    return {"name": "echo", "input_topics": [src], "output_topic": out, "ordering": "partition",
            "options": {"delay_ms": delay_ms}}  # fmt: skip


def _wait(
    condition: Callable[[], bool], limit_s: float, proc: ProcessorProcess, what: str
) -> float:
    began = time.monotonic()
    while not condition():
        proc.check_alive()
        assert time.monotonic() - began < limit_s, (
            f"no {what} in {limit_s}s: {proc.stacks()}\n{proc.output()[-3000:]}"
        )
        time.sleep(0.2)
    return time.monotonic() - began


def broker_restart(lab: Lab, down_s: float = 30.0) -> Tally:
    """A broker of its own is stopped (SIGTERM) for ``down_s`` while the processor works
    through a backlog and new events keep coming, then started again on the same port
    and data. The processor is never restarted.

    Facts: progress at the stop, the processor's memory while the broker was away, how
    long after the restart the first commit and the last event came, the exit code of
    the final SIGTERM.
    """
    tally = Tally(f"broker stopped for {down_s:.0f} s mid-stream, then restarted")
    began = time.monotonic()
    broker = local_kafka.start(attached=True)
    proc: ProcessorProcess | None = None
    try:
        bootstrap, group, backlog = broker.bootstrap, f"g-{uuid.uuid4().hex[:12]}", 6000
        with topics(bootstrap) as make:
            src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
            produce(bootstrap, src, event, backlog)
            config = write_config(lab.workdir / "broker-restart.toml",
                                  sections(bootstrap, group, dlq),
                                  [echo_route(src, out, delay_ms=5)])  # fmt: skip
            proc = ProcessorProcess(config, lab.workdir / "broker-restart.log").start()

            def progress() -> int:
                return committed(bootstrap, group, src, PARTITIONS)

            with Feeder(bootstrap, src, event, rate=100, start=backlog) as feed:
                proc.wait_for("assigned [")
                _wait(lambda: progress() >= 1500, 60, proc, "progress")
                at_stop = progress()
                local_kafka.halt(broker)
                down, peak_rss = time.monotonic(), 0.0
                while time.monotonic() - down < down_s:
                    proc.check_alive()
                    peak_rss = max(peak_rss, rss_mib(proc.pid))
                    time.sleep(0.5)
                broker = local_kafka.restart(broker)
                up = time.monotonic()
                resumed_s = _wait(lambda: progress() > at_stop, 120, proc, "commit after restart")
                total = feed.stop()
            caught_up_s = time.monotonic() - up + _wait(lambda: progress() >= total, 180, proc,
                                                        "all committed")  # fmt: skip
            proc.check_alive()
            log = proc.output()
            code = proc.terminate()
            account(tally, bootstrap, src, out, dlq, isolation="read_uncommitted")
    finally:
        if proc is not None:
            proc.ensure_gone()
        local_kafka.stop(broker)
    assert code == 0, f"exit {code}: {log[-3000:]}"
    tally.facts = {
        "committed_at_stop": at_stop,
        "arrived_by_restart": total,
        "processor_peak_rss_mib_while_down": round(peak_rss, 1),
        "first_commit_after_restart_s": round(resumed_s, 1),
        "caught_up_after_restart_s": round(caught_up_s, 1),
        "partitions_lost": log.count("without a chance to commit"),
        "rebalances": log.count("assigned ["),
        "exit_code": code,
    }
    tally.notes = (
        f"{at_stop} of {backlog} backlog events committed at the stop, "
        f"new events kept coming; the processor kept running (peak RSS {peak_rss:.0f} MiB) "
        f"and committed again {resumed_s:.1f} s after the restart, all done after "
        f"{caught_up_s:.0f} s; {tally.duplicated} events processed twice (at-least-once)"
    )
    tally.seconds = time.monotonic() - began
    return tally


def sigkill_loop(lab: Lab, *, eos: bool, kills: int = 3) -> Tally:
    """The processor is killed with SIGKILL ``kills`` times while events keep coming,
    then runs until everything is committed and is stopped with SIGTERM.

    At-least-once: each kill comes at a random moment. Exactly-once: each kill comes
    while a transaction of the processor holds records, known from the output topic: its
    end offset read uncommitted is beyond its last stable offset (the read_committed
    end), which only a transaction not yet committed or aborted causes; the SIGKILL
    follows that check at once. Whether the kill hit the transaction while it was open,
    or while its commit was already on its way to the broker, shows afterwards: the
    records of an open transaction are aborted (a read_committed reader never sees
    them), those of a commit under way are committed anyway.
    """
    name = "inside an exactly-once transaction" if eos else "at random moments (at-least-once)"
    tally = Tally(f"processor SIGKILLed {kills} times {name}")
    began = time.monotonic()
    rng = random.Random(uuid.uuid4().int)
    group = f"g-{uuid.uuid4().hex[:12]}"
    bootstrap, backlog = lab.bootstrap, 1000
    isolation = "read_committed" if eos else "read_uncommitted"
    with topics(bootstrap) as make:
        src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
        produce(bootstrap, src, event, backlog)
        config = _kill_config(lab, group, src, out, dlq, eos=eos)
        log = config.with_suffix(".log")
        at_kill: list[dict[int, range]] = []  # exactly-once: output offsets not yet stable
        progress: list[int] = []
        with Feeder(bootstrap, src, event, rate=300, start=backlog) as feed:
            for _ in range(kills):
                proc = ProcessorProcess(config, log).start()
                try:
                    proc.wait_for("assigned [")
                    time.sleep(rng.uniform(1.0, 2.5))
                    if eos:
                        at_kill.append(_kill_inside_transaction(proc, bootstrap, out))
                    else:
                        proc.kill()
                    progress.append(committed(bootstrap, group, src, PARTITIONS))
                finally:
                    proc.ensure_gone()
            events = feed.stop()
        proc = ProcessorProcess(config, log).start()
        try:
            proc.wait_for("assigned [")
            _wait(lambda: committed(bootstrap, group, src, PARTITIONS) >= events, 180, proc,
                  "all committed")  # fmt: skip
            code = proc.terminate()
        finally:
            proc.ensure_gone()
        account(tally, bootstrap, src, out, dlq, isolation=isolation)
        stable = {(r.partition, r.offset) for r in read_topic(bootstrap, out, isolation=isolation)}
        written = {(r.partition, r.offset) for r in read_topic(bootstrap, out)}
    text = log.read_text()
    assert code == 0, f"exit {code}: {text[-3000:]}"
    tally.facts = {"kills": kills, "committed_inputs_after_each_kill": progress,
                   "exit_code": code}  # fmt: skip
    done = f"inputs committed after each kill: {', '.join(map(str, progress))} of {events}"
    if not eos:
        tally.notes = f"{done}; {tally.duplicated} events processed twice (at-least-once)"
        tally.seconds = time.monotonic() - began
        return tally
    _judge_kills(tally, at_kill, written, stable, text)
    tally.notes = (
        f"every kill came while a transaction held records; {tally.notes}; {done}; "
        "read_committed: each input exactly once"
    )
    tally.seconds = time.monotonic() - began
    return tally


def _kill_config(lab: Lab, group: str, src: str, out: str, dlq: str, *, eos: bool) -> Path:
    settings = sections(
        lab.bootstrap, group, dlq, commit_interval_ms=1000 if eos else 300,
        guarantee="exactly-once" if eos else "at-least-once", transactional_id=f"txn-{group}",
    )  # fmt: skip
    # Static membership: a restarted instance takes its partitions back at once.
    settings["kafka"]["consumer_extra"] = {
        "group.instance.id": f"kill-{group}", "session.timeout.ms": 10000,
    }  # fmt: skip
    return write_config(lab.workdir / f"kill-{group}.toml", settings,
                        [echo_route(src, out, delay_ms=2)])  # fmt: skip


def _judge_kills(
    tally: Tally,
    at_kill: list[dict[int, range]],
    written: set[tuple[int, int]],
    stable: set[tuple[int, int]],
    log: str,
) -> None:
    """Per kill: were the records its transaction held aborted (the kill hit it open),
    or committed (its commit was under way)? Records aborted by the processor itself
    would blur this; it logs every such abort, and the count is reported."""
    verdicts = []  # per kill: (records of its transaction, how many were aborted)
    for ranges in at_kill:
        pending = {(p, o) for p, span in ranges.items() for o in span} & written
        verdicts.append((len(pending), len(pending - stable)))
    inside = sum(1 for _, aborted in verdicts if aborted)
    tally.facts |= {
        "records_pending_at_each_kill": [n for n, _ in verdicts],
        "aborted_of_them": [a for _, a in verdicts],
        "kills_inside_open_transaction": inside,
        "kills_during_commit": len(verdicts) - inside,
        "aborts_by_the_processor": log.count("transaction aborted"),
    }
    tally.notes = (
        f"{inside} of {len(verdicts)} hit it open (records aborted: "
        f"{', '.join(str(a) for _, a in verdicts)} of {', '.join(str(n) for n, _ in verdicts)})"
    )
    if inside < len(verdicts):
        tally.notes += ", the others while its commit was under way (committed after the kill)"


def _kill_inside_transaction(proc: ProcessorProcess, bootstrap: str, out: str) -> dict[int, range]:
    """SIGKILL ``proc`` as soon as a transaction of its holds records; return the output
    offsets not stable at that moment, per partition."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        proc.check_alive()
        stable = end_offsets(bootstrap, out, isolation="read_committed")
        ends = end_offsets(bootstrap, out)
        if sum(ends) > sum(stable):
            proc.kill()
            return {p: range(s, e) for p, (s, e) in enumerate(zip(stable, ends, strict=True))}
        time.sleep(0.01)
    raise AssertionError("no transaction holding records within 15 s")


def eos_kill(lab: Lab) -> Tally:
    return sigkill_loop(lab, eos=True)


def alo_kill(lab: Lab) -> Tally:
    return sigkill_loop(lab, eos=False, kills=6)


def replicas_one_host(lab: Lab, backlog: int = 3000) -> Tally:
    """Two exactly-once replicas on one machine with the default transactional id, as
    `sluicegate run` twice on a host (or a benchmark) gives them: neither may fence the
    other, both take partitions and commit, and a read_committed reader sees every input
    exactly once."""
    tally = Tally("two exactly-once replicas on one host, default transactional id")
    began = time.monotonic()
    group = f"g-{uuid.uuid4().hex[:12]}"
    bootstrap = lab.bootstrap
    with topics(bootstrap) as make:
        src, out, dlq = make("in", 4), make("out", 4), make("dlq")
        produce(bootstrap, src, event, backlog)
        settings = sections(bootstrap, group, dlq, guarantee="exactly-once",
                            max_in_flight=400, max_in_flight_per_partition=200,
                            max_poll_records=50)  # fmt: skip
        config = write_config(lab.workdir / f"two-{group}.toml", settings,
                              [echo_route(src, out, delay_ms=5)])  # fmt: skip
        first = ProcessorProcess(config, lab.workdir / "first.log").start()
        second = ProcessorProcess(config, lab.workdir / "second.log")
        try:
            first.wait_for("assigned [(")
            second.start()
            second.wait_for("assigned [(")  # the group gave it partitions of its own
            _wait(lambda: committed(bootstrap, group, src, 4) >= backlog, 120, first,
                  "all committed")  # fmt: skip
            codes = (second.terminate(), first.terminate())
        finally:
            first.ensure_gone()
            second.ensure_gone()
        account(tally, bootstrap, src, out, dlq, isolation="read_committed")
    logs = first.output() + second.output()
    assert codes == (0, 0), f"exits {codes}: {logs[-3000:]}"
    tally.facts = {"fenced": logs.count("producer fenced"), "exit_codes": list(codes)}
    tally.notes = f"{backlog} events; producers fenced: {tally.facts['fenced']}"
    tally.seconds = time.monotonic() - began
    return tally
