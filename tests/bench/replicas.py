"""Replicas: one, two and three ``sluicegate run`` processes in one consumer group when the
model's rate limit is the bottleneck.

    python -m tests.bench.replicas [--rpm 240] [--events N] [--rounds 2] [--write FILE]

The provider (the simulator, its own process) allows ``--rpm`` requests a minute to the
whole account, and every replica is configured with that same ``model.rpm``: the
account's limit, of which each takes the share its assigned partitions give it. Every
run starts from the same backlog on a fresh 6-partition topic (two partitions per
replica at most) with a fresh group and a fresh budget at the simulator and in every
replica; its rate is the outputs appended in a window that starts after the first
minute's allowance, which each budget holds at the start, is spent. The variants take
turns, round after round. A last run scales one replica to three and back to one under
load (``--no-scaling`` skips it).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.simulator.settings import SimulatorSettings
from tests.bench.framework_overhead import kafka
from tests.bench.harness import (
    ProcessorProcess,
    Sim,
    create_topics,
    processor_config,
    simulator,
    workdir,
)
from tests.bench.load import Outputs, Pacer, Stream
from tests.bench.report import machine, publish
from tests.bench.traffic import Reviews

SECTION = "replicas"
PARTITIONS = 6
TPM = 20_000_000  # far above what the requests limit lets through: it never binds


@dataclass(frozen=True)
class Setup:
    replicas: int

    @property
    def name(self) -> str:
        return f"{self.replicas} replica{'' if self.replicas == 1 else 's'}"


SETUPS = (Setup(1), Setup(2), Setup(3))


@dataclass(frozen=True)
class Plan:
    rpm: int
    events: int
    rounds: int
    warm_s: float
    window_s: float
    latency_ms: float


@dataclass
class Variant:
    setup: Setup
    rates: list[float] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)  # 429 answers per run
    rejected_window: list[int] = field(default_factory=list)  # 429 answers in the window
    per_request: list[float] = field(default_factory=list)  # in the window
    requests: list[float] = field(default_factory=list)  # answered requests/s in the window

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def one_run(bootstrap: str, sim: Sim, work: Path, plan: Plan, variant: Variant) -> float:
    """The replicas, a backlog, the rate in the window; records it in ``variant``."""
    setup = variant.setup
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {f"{prefix}.in": PARTITIONS, f"{prefix}.out": PARTITIONS,
                              f"{prefix}.dlq": 1, f"{prefix}.alerts": 1})  # fmt: skip
    pacer = Pacer(bootstrap, [Stream(f"{prefix}.in", Reviews(len(variant.rates) + 1))], 1.0)
    route = {"name": "reviews", "input_topics": [f"{prefix}.in"], "handler": "sentiment",
             "output_topic": f"{prefix}.out", "ordering": "unordered",
             "options": {"local_tier": False}}  # fmt: skip
    config = processor_config(
        bootstrap, f"{prefix}-group", [route], sim.url, prefix=prefix,
        model={"rpm": plan.rpm, "tpm": TPM, "cache_entries": 0},
    )  # fmt: skip
    reader = Outputs(bootstrap, {f"{prefix}.out": PARTITIONS}, pacer)
    procs = [ProcessorProcess(config, work, f"replica-{i}") for i in range(setup.replicas)]
    try:
        # Every replica holds its partitions before the backlog arrives: one that joins a
        # busy group waits for the others to drain what they give up (see the section).
        for proc in procs:
            proc.wait_ready()
        reader.start()
        sim.reset()
        sim.drain()  # the minute's allowance already spent: the rate is the sustained one
        pacer.fill(plan.events)
        while not (arrived := reader.since(0)):
            time.sleep(0.1)
        start_ms = min(a.at_ms for a in arrived) + plan.warm_s * 1000
        end_ms = start_ms + plan.window_s * 1000
        time.sleep(max(0.0, start_ms / 1000 - time.time()))
        before = sim.stats()
        time.sleep(max(0.0, end_ms / 1000 - time.time()))
        after = sim.stats()
        time.sleep(1.0)  # outputs appended in the window may still be on their way
        if reader.count >= plan.events:
            raise RuntimeError(f"the backlog of {plan.events} ran out before the window ended")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.stop()
        reader.stop()
        pacer.close()
    window = [a for a in reader.since(0) if start_ms <= a.at_ms < end_ms]
    rate = len(window) / plan.window_s
    # Events/request counts the outputs the model answered: one that shared the request
    # of an identical event in flight (tier "cache") was not in a request of its own.
    asked = sum(a.tier == "model" for a in window)
    requests = _ok(after) - _ok(before)
    variant.rates.append(rate)
    variant.rejected.append(int(after["by_status"].get("429", 0)))
    variant.rejected_window.append(_429(after) - _429(before))
    variant.per_request.append(asked / requests if requests else 0.0)
    variant.requests.append(requests / plan.window_s)
    return rate


def _ok(stats: dict[str, Any]) -> int:
    return int(stats["by_status"].get("200", 0))


def _429(stats: dict[str, Any]) -> int:
    return int(stats["by_status"].get("429", 0))


def used(plan: Plan, v: Variant) -> float:
    """Share of the provider's request limit the variant's answered requests took."""
    return statistics.median(v.requests) / (plan.rpm / 60)


def table(plan: Plan, variants: list[Variant]) -> str:
    base = variants[0].median
    lines = [
        "| variant | `model.rpm` of every replica | events/s (median) | **vs one replica** | "
        "each round (events/s) | events/request | of the requests the limit allows | 429 "
        "per run | 429 in the window |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for v in variants:
        rounds = ", ".join(f"{r:.1f}" for r in v.rates)
        lines.append(
            f"| {v.setup.name} | {plan.rpm} | {v.median:.1f} | "
            f"**{v.median / base:.2f}** | {rounds} | {statistics.median(v.per_request):.1f} | "
            f"{used(plan, v):.2f} | {statistics.median(v.rejected):.0f} | "
            f"{statistics.median(v.rejected_window):.0f} |"
        )
    return "\n".join(lines)


def findings(plan: Plan, variants: list[Variant]) -> str:
    """What the measured ratios say against the goal (>= 0.95 of one replica)."""
    base = variants[0]
    worst = min(variants[1:], key=lambda v: v.median, default=None)
    if worst is None:
        return ""
    ratio = worst.median / base.median
    verdict = "met" if ratio >= 0.95 else "missed"
    gap = ""
    if ratio < 0.95 and used(plan, worst) >= 0.97 * used(plan, base):
        gap = (" What is left of the gap is how full the batches are, since both used the"
               " requests the limit allows alike.")  # fmt: skip
    return f"""
- **Goal >= 0.95 of one replica's events/s: {verdict}** ({worst.setup.name}:
  {ratio:.2f}). They used {used(plan, worst):.2f} of the requests the limit allows (one
  replica: {used(plan, base):.2f}) and their requests carried
  {statistics.median(worst.per_request):.1f} events (one replica:
  {statistics.median(base.per_request):.1f}).{gap}"""


# -- scaling one -> three -> one under load ---------------------------------------------------


@dataclass
class Phase:
    name: str
    start: float  # wall clock of the change (s)
    end: float = 0.0
    assigned_after_s: float = float("nan")  # the change to a stable group
    first_output_s: float = float("nan")  # assignment to a joiner's first output
    rejected: int = 0  # 429s in the phase
    rejected_late: int = 0  # 429s after its first ``settle_s``
    rate: float = 0.0  # outputs/s in the phase


def members(admin: AdminClient, group: str) -> dict[str, set[int]] | None:
    """Each member's partitions of a stable group, else None."""
    try:
        desc = admin.describe_consumer_groups([group])[group].result(10)
    except (TimeoutError, KafkaException):
        return None
    if "STABLE" not in str(desc.state):
        return None
    return {m.member_id: {tp.partition for tp in m.assignment.topic_partitions}
            for m in desc.members}  # fmt: skip


def wait_members(
    admin: AdminClient, group: str, n: int, timeout: float = 90
) -> dict[str, set[int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = members(admin, group)
        held = sum(len(p) for p in found.values()) if found else 0
        if found is not None and len(found) == n and held == PARTITIONS:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"{group} did not settle on {n} members within {timeout:.0f} s")


def scaling_run(
    bootstrap: str, sim: Sim, work: Path, plan: Plan, *, phase_s: float, settle_s: float
) -> list[Phase]:
    """One replica, then three, then one, each for ``phase_s`` on one backlog."""
    sim.reset()
    sim.drain()  # as in the other runs: every phase's rate is the sustained one
    prefix = f"scale-{uuid.uuid4().hex[:8]}"
    group = f"{prefix}-group"
    create_topics(bootstrap, {f"{prefix}.in": PARTITIONS, f"{prefix}.out": PARTITIONS,
                              f"{prefix}.dlq": 1, f"{prefix}.alerts": 1})  # fmt: skip
    events = int(16 * plan.rpm * (1 + 3 * phase_s / 60) * 1.2)
    pacer = Pacer(bootstrap, [Stream(f"{prefix}.in", Reviews(99))], 1.0)
    route = {"name": "reviews", "input_topics": [f"{prefix}.in"], "handler": "sentiment",
             "output_topic": f"{prefix}.out", "ordering": "unordered",
             "options": {"local_tier": False}}  # fmt: skip
    config = processor_config(bootstrap, group, [route], sim.url, prefix=prefix,
                              model={"rpm": plan.rpm, "tpm": TPM, "cache_entries": 0})  # fmt: skip
    reader = Outputs(bootstrap, {f"{prefix}.out": PARTITIONS}, pacer)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    first = ProcessorProcess(config, work, "scale-0")
    joiners: list[ProcessorProcess] = []
    rejected: list[tuple[float, int]] = []  # (wall clock, 429s so far)
    phases: list[Phase] = []

    def watch(until: float) -> None:
        while time.time() < until:
            rejected.append((time.time(), int(sim.stats()["by_status"].get("429", 0))))
            time.sleep(0.5)

    try:
        first.wait_ready()
        before = wait_members(admin, group, 1)
        reader.start()
        pacer.fill(events)
        phases.append(Phase("1 replica", time.time()))
        watch(time.time() + phase_s)
        # Scale out: two more replicas join the busy group.
        phases.append(Phase("1 -> 3 replicas", time.time()))
        joiners = [ProcessorProcess(config, work, f"scale-{i}") for i in (1, 2)]
        after = wait_members(admin, group, 3)
        assigned = time.time()
        phases[-1].assigned_after_s = assigned - phases[-1].start
        moved = set().union(*(p for m, p in after.items() if m not in before))
        watch(time.time() + phase_s)
        phases[-1].first_output_s = _first_output(reader, moved, assigned) - assigned
        # Scale in: the two leave (SIGTERM) and the first takes their partitions back.
        phases.append(Phase("3 -> 1 replica", time.time()))
        for proc in joiners:
            proc.terminate()
        wait_members(admin, group, 1)
        phases[-1].assigned_after_s = time.time() - phases[-1].start
        watch(phases[-1].start + phase_s)
    finally:
        for proc in [first, *joiners]:
            proc.terminate()
        for proc in [first, *joiners]:
            proc.stop()
        reader.stop()
        pacer.close()
    _account(phases, rejected, [a.at_ms / 1000 for a in reader.since(0)], settle_s)
    return phases


def _account(
    phases: list[Phase], rejected: list[tuple[float, int]], arrived: list[float], settle_s: float
) -> None:
    """Each phase's end, 429s (all, and after its first ``settle_s``) and output rate."""
    ends = [p.start for p in phases[1:]] + [rejected[-1][0]]
    for phase, end in zip(phases, ends, strict=True):
        phase.end = end
        inside = [n for t, n in rejected if phase.start <= t <= end]
        late = [n for t, n in rejected if phase.start + settle_s <= t <= end]
        phase.rejected = inside[-1] - inside[0] if inside else 0
        phase.rejected_late = late[-1] - late[0] if late else 0
        phase.rate = sum(phase.start <= t < end for t in arrived) / (end - phase.start)


def _first_output(reader: Outputs, moved: set[int], since: float) -> float:
    """When the first output of an input on a moved partition appeared after ``since``."""
    later = [a.at_ms / 1000 for a in reader.since(0)
             if a.partition in moved and a.at_ms / 1000 >= since]  # fmt: skip
    return min(later) if later else float("nan")


def scaling_table(phases: list[Phase], settle_s: float) -> str:
    lines = [
        "| phase | seconds | the change to a stable group (s) | a joiner's first output "
        f"after its assignment (s) | events/s | answered 429 | **429 after the first "
        f"{settle_s:g} s** |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {p.name} | {p.end - p.start:.0f} | {_num(p.assigned_after_s)} | "
        f"{_num(p.first_output_s)} | {p.rate:.1f} | {p.rejected} | **{p.rejected_late}** |"
        for p in phases
    )
    return "\n".join(lines)


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.1f}"  # NaN: not applicable


def section(
    plan: Plan,
    variants: list[Variant],
    phases: list[Phase],
    *,
    settle_s: float,
    kafka_text: str,
    load: tuple[float, float],
    command: str,
    seconds: float,
) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    scaling = ""
    if phases:
        scaling = f"""
Scaling under load, one run: one replica on a backlog, two more started into the busy
group, then stopped again (SIGTERM), every replica with the same `model.rpm`
{plan.rpm:,}. The simulator's buckets are emptied when the run starts, but they
refill while the first replica starts and the backlog is produced, so the first phase
spends part of a minute's allowance (its rate is above what the limit sustains):

{scaling_table(phases, settle_s)}

- *A joiner's first output*: the first output of an input on a partition that moved to a
  joining replica, after the group became stable with three members (the admin
  client's description of the group). The giving member hands over at once the events
  that only wait for the budget (not yet sent, uncommitted).
- *429 after the first {settle_s:g} s*: the simulator's 429 answers from {settle_s:g} s
  after the change to the end of the phase (its `/sim/stats`, every 0.5 s).
"""
    return f"""\
## Replicas: one, two and three in one group when the model's limit is the bottleneck

What more replicas of `sluicegate run` in one consumer group add when the provider's
rate limit is what holds the throughput back. The OpenAI simulator (its own process)
allows {plan.rpm:,} requests a minute to the whole account and answers in
{plan.latency_ms:g} ms (median, lognormal); the route is `sentiment` with the local tier
and the response cache off, so that every event is a model call. Every replica has
`model.rpm` = {plan.rpm:,}, the account's limit: each takes the share of it that its
assigned partitions give it (partitions over all partitions of its routes, on every
rebalance) and follows the simulator's `x-ratelimit-*` headers, so nothing is divided by
hand.

{table(plan, variants)}

- Each run: a backlog of {plan.events:,} reviews on a fresh {PARTITIONS}-partition topic,
  a fresh group, the replicas started together and holding their partitions before the
  backlog is produced. The simulator's minute's allowance is spent when the backlog
  starts (its buckets emptied, as a minute into a run at the limit), while every
  replica's own budget starts full: the replicas learn that the account is spent from
  the first answers' headers (the 429s of the first second). The rate counts the
  outputs the broker appended from {plan.warm_s:g} s to {plan.warm_s + plan.window_s:g} s
  after the first one: the sustained rate. Median of {plan.rounds} rounds; the variants
  take turns in every round.
- *Events/request*: the outputs in the window that a model request answered (not those
  that shared the request of an identical review in flight) over the simulator's
  answered requests in the window (its `/sim/stats` at both ends); *of the requests the
  limit allows*: those requests against {plan.rpm / 60:g} a second; *429 in the window*:
  the simulator's 429 answers in it. When the provider's limit is the bottleneck,
  replicas can only share it: the best is a ratio of 1.00 to one replica, with no
  429s.{findings(plan, variants)}
{scaling}
- Settings: the defaults (micro-batches of up to 16 events, concurrency from 8 up to 64,
  `max_in_flight` 10000) but `model.rpm` as in the table, `model.tpm` far above what
  the requests let through, `unordered` ordering.
- Machine: {machine(kafka_text)}; the simulator, the broker and every replica on the
  same machine; load average {load[0]:.2f} before the run, {load[1]:.2f} after.
- Measured {when}, {seconds:.0f} s in all, with the command `{command}` (`make load`).
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpm", type=int, default=240, help="the provider's requests a minute")
    parser.add_argument("--events", type=int, default=None,
                        help="the backlog of every run (default: what a minute's allowance "
                        "and the window take at 16 events a request, and some)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant")
    parser.add_argument("--warm", type=float, default=15.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="median answer time")
    parser.add_argument("--phase", type=float, default=40.0, help="seconds of a scaling phase")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after a change whose 429s do not count")  # fmt: skip
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1 -> 3 -> 1 run")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # The minute's allowance is spent at the start: the backlog only needs to outlast the
    # window at the limit's rate, with full batches, and some.
    events = args.events or int(16 * args.rpm * (args.warm + args.window + 15) / 60)
    plan = Plan(args.rpm, events, args.rounds, args.warm, args.window, args.latency_ms)
    variants = [Variant(s) for s in SETUPS]
    started, load_before = time.monotonic(), os.getloadavg()[0]
    sim_settings = SimulatorSettings(rpm=plan.rpm, tpm=TPM, latency_median_ms=plan.latency_ms,
                                     seed=9)  # fmt: skip
    phases: list[Phase] = []
    with kafka() as (bootstrap, kafka_text), simulator(sim_settings) as sim, workdir("rep") as work:
        for r in range(1, plan.rounds + 1):
            for v in variants:
                rate = one_run(bootstrap, sim, work, plan, v)
                print(f"round {r}/{plan.rounds}  {v.setup.name:<20} {rate:7.1f} events/s  "
                      f"{v.per_request[-1]:.1f} events/request  {v.rejected[-1]} answered 429 "
                      f"({v.rejected_window[-1]} in the window)",
                      flush=True)  # fmt: skip
        if not args.no_scaling:
            phases = scaling_run(bootstrap, sim, work, plan, phase_s=args.phase,
                                 settle_s=args.settle)  # fmt: skip
            for p in phases:
                print(f"{p.name:<16} {p.rate:6.1f} events/s  429 {p.rejected} "
                      f"({p.rejected_late} late)  assigned after {p.assigned_after_s:.1f}s  "
                      f"first output {p.first_output_s:.1f}s", flush=True)  # fmt: skip
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    text = section(plan, variants, phases, settle_s=args.settle, kafka_text=kafka_text,
                   load=load, command=command, seconds=time.monotonic() - started)  # fmt: skip
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
