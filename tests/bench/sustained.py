"""Sustained, model-bound, side by side: ``sluicegate run`` against the GPT-5.4 nano guide's
pattern (asyncio + ``Semaphore(64)`` + ``AsyncOpenAI``, one request per event, a plain
confluent-kafka consumer and producer) and Quix Streams, on one broker and one simulator.

    python -m tests.bench.sustained [--events 5000] [--cap 120] [--write FILE]

Every variant is processes of its own in a consumer group of its own, on fresh topics
(6 partitions) holding the same backlog of reviews, each numbered so that no two are the
same text. The simulator allows ``--rpm`` requests and ``--tpm`` tokens a minute and
answers in ``--latency-ms``; its buckets are emptied once the variant holds its
partitions (the minute's allowance already spent), then the backlog is produced. A
variant runs until every event has its output or ``--cap`` seconds have passed. An
independent consumer reads the output topic (every output names its input), and the
group's committed offsets say what the variant consumed: an event committed without an
output and not dead-lettered is lost. Quix Streams runs from a virtualenv of its own
(``make bench-peers``: it needs confluent-kafka < 2.13, the project pins a newer one).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from openai.lib._pydantic import to_strict_json_schema

from handlers.sentiment import TASK
from stream.config import BudgetSettings
from stream.kafka.headers import SOURCE_OFFSET, SOURCE_PARTITION, header, message_headers
from stream.model.cost import cost_usd
from stream.simulator.settings import SimulatorSettings
from tests.bench.framework_overhead import kafka
from tests.bench.harness import (
    ProcessorProcess,
    Sim,
    _die_with_parent,
    create_topics,
    processor_config,
    simulator,
    workdir,
)
from tests.bench.load import Pacer, Stream
from tests.bench.model_throughput import distinct
from tests.bench.model_workload import DATA, interleaved, model_id
from tests.bench.peers.spec import Spec
from tests.bench.report import machine, publish
from tests.bench.traffic import Reviews

SECTION = "sustained"
PARTITIONS = 6
ROOT = Path(__file__).resolve().parents[2]
QUIX_PYTHON = Path(os.environ.get("QUIX_PYTHON", ROOT / ".venv-quix" / "bin" / "python"))


@dataclass(frozen=True)
class Plan:
    events: int
    rpm: int
    tpm: int
    latency_ms: float
    cap_s: float
    quix_processes: int


@dataclass
class Result:
    name: str
    processes: int
    seconds: float = 0.0
    outputs: int = 0
    consumed: int = 0  # inputs below the group's committed offsets
    lost: int = 0
    dead: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    start_s: float = 0.0  # spawn to every partition assigned
    cpu_s: float = 0.0  # user + system time of the variant's processes over the run
    answered_by: dict[str, int] = field(default_factory=dict)
    rss_mib: list[float] = field(default_factory=list)  # peak per process

    @property
    def rate(self) -> float:
        return self.outputs / self.seconds if self.seconds else 0.0

    def status(self, code: str) -> int:
        return int(self.stats.get("by_status", {}).get(code, 0))

    def usd(self) -> float:
        prices = BudgetSettings().price_table()[model_id()]
        s = self.stats
        return cost_usd(prices, prompt=s.get("prompt_tokens", 0), cached=s.get("cached_tokens", 0),
                        completion=s.get("completion_tokens", 0))  # fmt: skip

    def share(self, plan: Plan) -> float:
        """Of the account's limit in the run: the larger of the requests' and the tokens'
        (usage as the answers report it) shares."""
        minutes = self.seconds / 60
        tokens = float(self.stats.get("prompt_tokens", 0) + self.stats.get("completion_tokens", 0))
        return max(self.status("200") / (plan.rpm * minutes), tokens / (plan.tpm * minutes))


@dataclass(frozen=True)
class Bench:
    """What every run shares: the plan, the broker, the simulator, the scratch dir, the texts."""

    plan: Plan
    bootstrap: str
    sim: Sim
    work: Path
    texts: list[str]


class Child:
    """A peer's process, its output in a log file."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - dies with the benchmark
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(45)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system time so far, from ``/proc/<pid>/stat`` (0 once the process is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Reader(threading.Thread):
    """The independent count: every output's input (partition, offset), from sluicegate's
    trace headers or the peers' ``source`` field."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="reader", daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "enable.auto.commit": False,
                                  "group.id": f"reader-{uuid.uuid4().hex}"})  # fmt: skip
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                              for p in range(PARTITIONS)])  # fmt: skip
        self.seen: dict[tuple[int, int], int] = {}  # input -> output's append time (ms)
        self.duplicates = 0
        self.answered_by: Counter[str] = Counter()  # sluicegate's enrichment.source
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for msg in self.consumer.consume(500, 0.2):
                if msg.error() is not None:
                    continue
                headers = message_headers(msg)
                partition = header(headers, SOURCE_PARTITION)
                if partition is not None:
                    source = (int(partition), int(header(headers, SOURCE_OFFSET) or -1))
                    enrichment = orjson.loads(msg.value() or b"{}").get("enrichment") or {}
                    self.answered_by[str(enrichment.get("source"))] += 1
                else:
                    _, p, o = orjson.loads(msg.value() or b"{}")["source"]
                    source = (int(p), int(o))
                if source in self.seen:
                    self.duplicates += 1
                self.seen.setdefault(source, msg.timestamp()[1])

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.consumer.close()


def wait_assigned(admin: AdminClient, group: str, members: int, alive: Any) -> None:
    """Until ``members`` members of ``group`` hold every partition (the group is stable)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"a process of {group} exited before it was assigned")
        try:
            desc = admin.describe_consumer_groups([group])[group].result(10)
        except (TimeoutError, KafkaException):  # the coordinator is not there yet
            time.sleep(0.5)
            continue
        held = sum(len(m.assignment.topic_partitions) for m in desc.members)
        if len(desc.members) == members and held == PARTITIONS and "STABLE" in str(desc.state):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{group} did not hold its {PARTITIONS} partitions within 90 s")


def warm_up(bootstrap: str) -> None:
    """One group joined and left before the runs, so that the first variant's start-up
    does not include the broker creating its offsets topic and group coordinator."""
    topic = f"sus-warm-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, {topic: 1})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-group"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 90
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
    finally:
        consumer.close()


def committed(admin: AdminClient, group: str, topic: str) -> dict[int, int]:
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    request = [ConsumerGroupTopicPartitions(group, tps)]
    answer = admin.list_consumer_group_offsets(request)[group].result(10)
    return {tp.partition: max(tp.offset, 0) for tp in answer.topic_partitions}


def count(bootstrap: str, topic: str) -> int:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}"})
    try:
        total = 0
        for p in range(1):
            low, high = probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        probe.close()


def spec(bootstrap: str, group: str, prefix: str, url: str) -> Spec:
    return Spec(bootstrap=bootstrap, group=group, input_topic=f"{prefix}.in",
                output_topic=f"{prefix}.out", base_url=url, api_key="sim", model=model_id(),
                instructions=TASK.instructions, schema_name=TASK.output.__name__,
                schema=to_strict_json_schema(TASK.output))  # fmt: skip


def start(bench: Bench, name: str, group: str, prefix: str) -> list[Any]:
    plan, bootstrap, sim, work = bench.plan, bench.bootstrap, bench.sim, bench.work
    if name in ("sluicegate", "sluicegate-local"):
        route = {"name": "reviews", "input_topics": [f"{prefix}.in"], "handler": "sentiment",
                 "output_topic": f"{prefix}.out", "ordering": "unordered",
                 "options": {"local_tier": name == "sluicegate-local"}}  # fmt: skip
        config = processor_config(bootstrap, group, [route], sim.url, prefix=prefix,
                                  model={"rpm": plan.rpm, "tpm": plan.tpm,
                                         "cache_entries": 0})  # fmt: skip
        return [ProcessorProcess(config, work, f"{prefix}-sluicegate")]
    path = work / f"{prefix}.json"
    spec(bootstrap, group, prefix, sim.url).write(path)
    if name == "guide":
        argv = [sys.executable, "-m", "tests.bench.peers.guide_asyncio", str(path)]
        return [Child(argv, work / f"{prefix}-guide.log")]
    if not QUIX_PYTHON.exists():
        raise SystemExit(f"no Quix Streams virtualenv at {QUIX_PYTHON}: run `make bench-peers`")
    argv = [str(QUIX_PYTHON), "-m", "tests.bench.peers.quix_app", str(path)]
    return [Child(argv, work / f"{prefix}-quix-{i}.log") for i in range(plan.quix_processes)]


def one_run(bench: Bench, name: str, label: str) -> Result:
    plan, bootstrap, sim = bench.plan, bench.bootstrap, bench.sim
    prefix = f"sus-{name}-{uuid.uuid4().hex[:6]}"
    group = f"{prefix}-group"
    create_topics(bootstrap, {f"{prefix}.in": PARTITIONS, f"{prefix}.out": PARTITIONS,
                              f"{prefix}.dlq": 1, f"{prefix}.alerts": 1})  # fmt: skip
    admin = AdminClient({"bootstrap.servers": bootstrap})
    spawned = time.monotonic()
    procs = start(bench, name, group, prefix)
    result = Result(label, len(procs))
    peaks = [0.0] * len(procs)
    reader = Reader(bootstrap, f"{prefix}.out")
    pacer = Pacer(bootstrap, [Stream(f"{prefix}.in", Reviews(7, bench.texts))], 1.0)
    try:
        wait_assigned(admin, group, len(procs), lambda: all(p.alive() for p in procs))
        result.start_s = time.monotonic() - spawned
        cpu_before = sum(cpu_seconds(p.pid) for p in procs)
        reader.start()
        sim.reset()
        sim.drain()  # the minute's allowance already spent
        began = time.time()
        pacer.fill(plan.events)
        while len(reader.seen) < plan.events and time.time() - began < plan.cap_s:
            peaks = [max(m, rss_mib(p.pid)) for m, p in zip(peaks, procs, strict=True)]
            if not all(p.alive() for p in procs):
                raise RuntimeError(f"a process of {label} exited during the run")
            time.sleep(0.5)
        ended = time.time()
        result.cpu_s = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
        result.stats = sim.stats()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.stop()
        pacer.close()
    time.sleep(2.0)  # outputs produced at the stop
    reader.stop()
    done = committed(admin, group, f"{prefix}.in")
    inside = [t for t in reader.seen.values() if t <= ended * 1000]
    result.outputs = len(inside)
    result.seconds = ended - began
    result.consumed = sum(done.values())
    answered = sum(1 for (p, o) in reader.seen if o < done.get(p, 0))
    result.dead = count(bootstrap, f"{prefix}.dlq")
    result.lost = max(0, result.consumed - answered - result.dead)
    result.rss_mib = peaks
    result.answered_by = dict(reader.answered_by)
    return result


def table(plan: Plan, rows: list[Result]) -> str:
    base = rows[0]
    lines = [
        "| variant | processes | events out (of the backlog) | seconds | events/s | **vs "
        "sluicegate** | of the account's limit | answered 429 | events lost | "
        "$ per 1,000 events | **$ vs sluicegate** |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        per_k = r.usd() / r.outputs * 1000 if r.outputs else float("nan")
        base_k = base.usd() / base.outputs * 1000
        lines.append(
            f"| {r.name} | {r.processes} | {r.outputs:,} ({plan.events:,}) | {r.seconds:.1f} | "
            f"{r.rate:.1f} | **{r.rate / base.rate:.3f}** | {r.share(plan):.2f} | "
            f"{r.status('429'):,} of {r.status('429') + r.status('200'):,} | "
            f"{r.lost:,} of {r.consumed:,} consumed | {per_k:.4f} | **{per_k / base_k:.2f}** |"
        )
    return "\n".join(lines)


def footprint(rows: list[Result]) -> str:
    lines = [
        "| variant | start-up: spawn to every partition assigned (s) | peak RSS per process "
        "(MiB) | peak RSS, all processes (MiB) |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        each = ", ".join(f"{m:.0f}" for m in r.rss_mib)
        lines.append(f"| {r.name} | {r.start_s:.1f} | {each} | {sum(r.rss_mib):.0f} |")
    return "\n".join(lines)


def section(plan: Plan, rows: list[Result], *, kafka_text: str, load: tuple[float, float],
            command: str, seconds: float) -> str:  # fmt: skip
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    import openai  # noqa: PLC0415 - only for its version

    return f"""\
## Sustained and model-bound, side by side: sluicegate, the guide's pattern, Quix Streams

Three ways to enrich a topic of reviews with the sentiment task, each consuming a backlog
of {plan.events:,} reviews (numbered, so that no two are the same text) from a fresh
{PARTITIONS}-partition topic of the same broker and writing one output per event, against
the same OpenAI simulator: {plan.rpm:,} requests and {plan.tpm:,} tokens a minute, answers
in {plan.latency_ms:g} ms (median, lognormal). The simulator's allowance is emptied once
the variant holds its partitions (the minute's allowance already spent), then the
backlog is produced; a variant runs until every event has an output or {plan.cap_s:g} s
have passed. The variants run one after the other in one run.

{table(plan, rows)}

- *sluicegate*: one `sluicegate run` process, the defaults (micro-batches of up to 16
  events, concurrency from 8, the budget by assignment and the `x-ratelimit-*` headers)
  with `model.rpm`/`model.tpm` set to the account's limits, the route `sentiment` with
  the local tier and the response cache off (every event a model call, as for the peers)
  and `unordered` ordering. Its own budget starts full; the headers of its first answers
  tell it the account's is spent.
- *the guide's pattern* (`tests/bench/peers/guide_asyncio.py`): one process; a
  confluent-kafka consumer with its defaults (automatic commits), a task per event under
  `asyncio.Semaphore(64)`, `AsyncOpenAI` as it comes (two retries after `retry-after`),
  strict structured output; a request that still fails is logged and its event dropped.
- *Quix Streams* (`tests/bench/peers/quix_app.py`, quixstreams from its own virtualenv,
  `make bench-peers`): {plan.quix_processes} processes in one group, each an
  `Application` whose dataframe makes one synchronous `OpenAI` request per event (Quix
  handles one event at a time per process); a request that still fails is logged and its
  event filtered out.
- *events/s*: outputs appended between the backlog's production and the end of the run,
  over that time. *Of the account's limit*: the larger of the answered requests over
  what {plan.rpm:,} a minute allows and the answers' tokens (prompt + completion, as
  reported) over {plan.tpm:,} a minute, for the same time. *Lost*: inputs below the
  group's committed offsets at the end with neither an output nor a dead letter, read
  back by an independent consumer (every output names its input: sluicegate's trace
  headers, the peers' `source` field). *$*: the simulator's token counts at
  {model_id()}'s prices (`stream/model/cost.py`), failed requests' usage included, over
  the events that got an output.

Footprint in the same run (resident memory sampled every 0.5 s while the variant ran):

{footprint(rows)}

- Machine: {machine(kafka_text)}, openai {openai.__version__}; the simulator, the broker
  and every variant's processes on the same machine; load average {load[0]:.2f} before
  the run, {load[1]:.2f} after.
- Measured {when}, {seconds:.0f} s in all, with the command `{command}`
  (`make bench-sustained`).
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000, help="the backlog of every variant")
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--tpm", type=int, default=2_000_000)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds a variant may take")
    parser.add_argument("--quix-processes", type=int, default=3)
    parser.add_argument("--only", action="append", choices=["sluicegate", "guide", "quix"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


VARIANTS = (
    ("sluicegate", "sluicegate run"),
    ("guide", "the guide's asyncio + Semaphore(64) + AsyncOpenAI"),
    ("quix", "Quix Streams"),
)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = Plan(args.events, args.rpm, args.tpm, args.latency_ms, args.cap, args.quix_processes)
    texts = distinct(interleaved(args.data), plan.events)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    settings = SimulatorSettings(rpm=plan.rpm, tpm=plan.tpm, latency_median_ms=plan.latency_ms,
                                 seed=5)  # fmt: skip
    rows = []
    with kafka() as (bootstrap, kafka_text), simulator(settings) as sim, workdir("sus") as work:
        warm_up(bootstrap)
        for name, label in VARIANTS:
            if args.only and name not in args.only:
                continue
            row = one_run(Bench(plan, bootstrap, sim, work, texts), name, label)
            print(f"{label:<50} {row.outputs:6d} out in {row.seconds:6.1f}s = {row.rate:6.1f}/s  "
                  f"429: {row.status('429')}  lost {row.lost}  start {row.start_s:.1f}s  "
                  f"rss {sum(row.rss_mib):.0f} MiB", flush=True)  # fmt: skip
            rows.append(row)
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    text = section(plan, rows, kafka_text=kafka_text, load=load, command=command,
                   seconds=time.monotonic() - started)  # fmt: skip
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
