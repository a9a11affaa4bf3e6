"""Replicas: one, two and three ``sluicegate run`` processes in one consumer group when the
model's rate limit is the bottleneck.

    python -m tests.bench.replicas [--rpm 240] [--events N] [--rounds 2] [--write FILE]

The provider (the simulator, its own process) allows ``--rpm`` requests a minute to the
whole account. Its limits are per account, sluicegate's ``model.rpm`` per replica, so N
replicas each get ``rpm / N`` (as the README says); a last variant gives each of three
replicas the whole ``rpm``, the mistake of not dividing it. Every run starts from the
same backlog on a fresh 6-partition topic (two partitions per replica at most) with a
fresh group and a fresh budget at the simulator and in every replica; its rate is the
outputs appended in a window that starts after the first minute's allowance, which each
budget holds at the start, is spent. The variants take turns, round after round.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    divided: bool = True

    def rpm_each(self, rpm: int) -> int:
        return rpm // self.replicas if self.divided else rpm

    @property
    def name(self) -> str:
        many = "replica" if self.replicas == 1 else "replicas"
        if self.replicas == 1:
            return "1 replica, `model.rpm` = the provider's limit"
        how = "a share of the limit each" if self.divided else "the whole limit each (not divided)"
        return f"{self.replicas} {many}, {how}"


SETUPS = (Setup(1), Setup(2), Setup(3), Setup(3, divided=False))


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
    per_request: list[float] = field(default_factory=list)  # in the window
    requests: list[float] = field(default_factory=list)  # answered requests/s in the window

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def one_run(bootstrap: str, sim: Sim, work: Path, plan: Plan, variant: Variant) -> float:
    """The replicas, a backlog, the rate in the window; records it in ``variant``."""
    setup = variant.setup
    sim.reset()
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {f"{prefix}.in": PARTITIONS, f"{prefix}.out": PARTITIONS,
                              f"{prefix}.dlq": 1, f"{prefix}.alerts": 1})  # fmt: skip
    pacer = Pacer(bootstrap, [Stream(f"{prefix}.in", Reviews(len(variant.rates) + 1))], 1.0)
    route = {"name": "reviews", "input_topics": [f"{prefix}.in"], "handler": "sentiment",
             "output_topic": f"{prefix}.out", "ordering": "unordered",
             "options": {"local_tier": False}}  # fmt: skip
    config = processor_config(
        bootstrap, f"{prefix}-group", [route], sim.url, prefix=prefix,
        model={"rpm": setup.rpm_each(plan.rpm), "tpm": TPM // setup.replicas,
               "cache_entries": 0},
    )  # fmt: skip
    reader = Outputs(bootstrap, {f"{prefix}.out": PARTITIONS}, pacer)
    procs = [ProcessorProcess(config, work, f"replica-{i}") for i in range(setup.replicas)]
    try:
        # Every replica holds its partitions before the backlog arrives: one that joins a
        # busy group waits for the others to drain what they give up (see the section).
        for proc in procs:
            proc.wait_ready()
        reader.start()
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
    inside = sum(start_ms <= a.at_ms < end_ms for a in reader.since(0))
    rate = inside / plan.window_s
    requests = _ok(after) - _ok(before)
    variant.rates.append(rate)
    variant.rejected.append(int(after["by_status"].get("429", 0)))
    variant.per_request.append(inside / requests if requests else 0.0)
    variant.requests.append(requests / plan.window_s)
    return rate


def _ok(stats: dict[str, Any]) -> int:
    return int(stats["by_status"].get("200", 0))


def used(plan: Plan, v: Variant) -> float:
    """Share of the provider's request limit the variant's answered requests took."""
    return statistics.median(v.requests) / (plan.rpm / 60)


def table(plan: Plan, variants: list[Variant]) -> str:
    base = variants[0].median
    lines = [
        "| variant | `model.rpm` per replica | events/s (median) | **vs one replica** | each "
        "round (events/s) | events/request | of the requests the limit allows | calls "
        "answered 429 per run |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for v in variants:
        rounds = ", ".join(f"{r:.1f}" for r in v.rates)
        lines.append(
            f"| {v.setup.name} | {v.setup.rpm_each(plan.rpm)} | {v.median:.1f} | "
            f"**{v.median / base:.2f}** | {rounds} | {statistics.median(v.per_request):.1f} | "
            f"{used(plan, v):.2f} | {statistics.median(v.rejected):.0f} |"
        )
    return "\n".join(lines)


def findings(plan: Plan, variants: list[Variant]) -> str:
    """What the measured ratios say, beyond the expected."""
    base = variants[0].median
    divided = [v for v in variants[1:] if v.setup.divided]
    undivided = [v for v in variants if not v.setup.divided]
    notes = ""
    if divided and min(v.median for v in divided) / base < 0.95:
        worst = min(divided, key=lambda v: v.median)
        notes += f"""
- **Shared, the limit carried fewer events**: {worst.setup.replicas} replicas with a
  share each reached {worst.median / base:.2f} of one replica's events/s. They used
  {used(plan, worst):.2f} of the requests the limit allows (one replica:
  {used(plan, variants[0]):.2f}), but their requests carried
  {statistics.median(worst.per_request):.1f} events (one replica:
  {statistics.median(variants[0].per_request):.1f})."""
    if undivided:
        v = undivided[0]
        notes += f"""
- Not dividing `model.rpm` ({v.setup.replicas} replicas with the whole limit each) made
  the sum of the budgets {v.setup.replicas} times the provider's; the provider refused
  the excess ({statistics.median(v.rejected):.0f} calls answered 429 per run, each
  waiting for `retry-after` and cutting the replica's concurrency) and the rate was
  {v.median / base:.2f} of one replica's."""
    return notes


def section(
    plan: Plan,
    variants: list[Variant],
    *,
    kafka_text: str,
    load: tuple[float, float],
    command: str,
    seconds: float,
) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""\
## Replicas: one, two and three in one group when the model's limit is the bottleneck

What more replicas of `sluicegate run` in one consumer group add when the provider's
rate limit is what holds the throughput back. The OpenAI simulator (its own process)
allows {plan.rpm:,} requests a minute to the whole account and answers in
{plan.latency_ms:g} ms (median, lognormal); the route is `sentiment` with the local tier
and the response cache off, so that every event is a model call. Limits are per account
and `model.rpm` per replica, so N replicas get {plan.rpm:,} / N each (the README's
advice); the last row gives each of three the whole limit instead.

{table(plan, variants)}

- Each run: a backlog of {plan.events:,} reviews on a fresh {PARTITIONS}-partition topic,
  a fresh group, the replicas started together; the rate counts the outputs the broker
  appended from {plan.warm_s:g} s to {plan.warm_s + plan.window_s:g} s after the first
  one, after the minute's allowance that every budget (the simulator's and each
  replica's) holds at the start is spent, so it is the sustained rate. Median of
  {plan.rounds} rounds; the variants take turns in every round.
- *Events/request* and *of the requests the limit allows*: the simulator's answered
  requests in the window (its `/sim/stats` at both ends), against {plan.rpm / 60:g}
  requests a second. When the provider's limit is the
  bottleneck, replicas can only share it: the best they can do is a ratio of 1.00 to
  one replica, with no 429s. More replicas pay off when something of one replica is
  the bottleneck (its CPU, its connections), not the account's limit. Every variant
  here used about all the requests the limit allows; what differs is how many events
  a request carried.{findings(plan, variants)}
- A replica that joins a busy group stays idle until the members that give it
  partitions have drained them: up to `processing.shutdown_timeout_s` (30 s), since
  their in-flight events wait for the model's budget. So the replicas here are started
  and hold their partitions before the backlog is produced; scaling out while a
  backlog waits costs that pause first.
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
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    events = args.events or int(16 * args.rpm * (1 + (args.warm + args.window + 10) / 60))
    plan = Plan(args.rpm, events, args.rounds, args.warm, args.window, args.latency_ms)
    variants = [Variant(s) for s in SETUPS]
    started, load_before = time.monotonic(), os.getloadavg()[0]
    sim_settings = SimulatorSettings(rpm=plan.rpm, tpm=TPM, latency_median_ms=plan.latency_ms,
                                     seed=9)  # fmt: skip
    with kafka() as (bootstrap, kafka_text), simulator(sim_settings) as sim, workdir("rep") as work:
        for r in range(1, plan.rounds + 1):
            for v in variants:
                rate = one_run(bootstrap, sim, work, plan, v)
                print(f"round {r}/{plan.rounds}  {v.setup.name:<60} {rate:7.1f} events/s  "
                      f"{v.rejected[-1]} answered 429", flush=True)  # fmt: skip
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    text = section(plan, variants, kafka_text=kafka_text, load=load, command=command,
                   seconds=time.monotonic() - started)  # fmt: skip
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
