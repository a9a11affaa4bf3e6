"""Added latency: what the processor adds on top of the model's own answer time, at half of
the capacity the model's limits allow.

    python -m tests.bench.latency [--rpm 600 --rpm 240] [--latency-ms 300] [--seconds 90]
                                  [--fixed-window] [--write FILE]

The simulator (its own process) answers every request in exactly ``--latency-ms``
(lognormal sigma 0, no time per output token), so the model's latency is a known
constant; the processor's own histogram of its model calls (``sluicegate_model_seconds``)
says how much of the rest is the HTTP round trip and the simulator's work. The processor
(``sluicegate run``) has one ``sentiment`` route with the local tier and the response
cache off, so that every event is a model call, and ``unordered`` ordering, so that no
event waits for another of its key. The model's limit is ``--rpm`` requests a minute
(the tokens limit far above it), so the ceiling is ``rpm / 60`` requests a second times
the events one request carries. Each phase runs on fresh topics with a fresh processor
and a full budget at a steady rate: half of the ceiling with full batches at each limit,
then half of the ceiling at one event per request. An event's latency is its output's
broker append time minus its input's; what the processor adds is that minus the model's
constant answer time. ``--fixed-window`` adds, at the first limit, the full-batch phase
again with the batch window of old (``model.batch_idle_ms = 0``: every batch waits out
``batch_wait_ms`` unless it fills), side by side with the window that closes when no
more asks come.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from stream.config import ModelSettings
from stream.simulator.settings import SimulatorSettings
from tests.bench.framework_overhead import kafka
from tests.bench.harness import (
    LagMeter,
    ProcessorProcess,
    Sim,
    create_topics,
    metric,
    processor_config,
    simulator,
    workdir,
)
from tests.bench.latency_report import Facts, section
from tests.bench.load import Outputs, Pacer, Stream
from tests.bench.report import publish
from tests.bench.traffic import Reviews

SECTION = "added-latency"
PARTITIONS = 3
WARM_S = 10.0  # inputs of the first seconds are left out (connections, the JIT of it all)
SETTLE_S = 15.0  # how long the outputs may trail the last input before it counts as behind
TPM = 20_000_000  # far above what the requests limit lets through: it never binds


@dataclass(frozen=True)
class Plan:
    rpms: tuple[int, ...]
    latency_ms: float
    seconds: float
    batch: int  # events a request carries when a backlog fills it
    fixed_window: bool = False  # also the full-batch phase with batch_idle_ms = 0

    def phases(self) -> list[Phase]:
        """Half of the ceiling with full batches at each limit, then half of it at one
        event per request at the first limit."""
        phases = [
            Phase(f"{rpm:,} requests/min, half of the ceiling with full batches", rpm,
                  rpm / 60 * self.batch / 2, f"0.5 of {rpm / 60 * self.batch:g}")
            for rpm in self.rpms
        ]  # fmt: skip
        rpm = self.rpms[0]
        if self.fixed_window:
            phases.append(
                Phase(f"{rpm:,} requests/min, half of the ceiling with full batches, fixed "
                      "window (`batch_idle_ms` 0)", rpm, rpm / 60 * self.batch / 2,
                      f"0.5 of {rpm / 60 * self.batch:g}", model={"batch_idle_ms": 0})
            )  # fmt: skip
        phases.append(
            Phase(f"{rpm:,} requests/min, half of the ceiling at one event per request", rpm,
                  rpm / 60 / 2, f"0.5 of {rpm / 60:g}")
        )  # fmt: skip
        return phases


@dataclass
class Phase:
    name: str
    rpm: int
    rate: float
    of_ceiling: str
    model: dict[str, object] = field(default_factory=dict)  # model settings of the phase
    latencies: list[int] = field(default_factory=list)  # ms, inputs after the warm-up
    sent: int = 0
    answered: int = 0
    requests: float = 0.0
    call_s: float = 0.0  # mean time of a model call, as the processor measured it
    lag: list[int] = field(default_factory=list)  # every 5 s
    out_rate: float = 0.0  # outputs/s over the second half of the phase
    missing: int = 0  # inputs without an output SETTLE_S after the last one
    rejected: int = 0

    @property
    def kept_up(self) -> bool:
        return self.missing == 0


def route(prefix: str) -> dict[str, object]:
    return {"name": "reviews", "input_topics": [f"{prefix}.in"], "output_topic": f"{prefix}.out",
            "handler": "sentiment", "ordering": "unordered",
            "options": {"local_tier": False}}  # fmt: skip


@dataclass(frozen=True)
class Place:
    """Where a phase runs: the broker, the simulator, a scratch directory."""

    bootstrap: str
    sim: Sim
    work: Path


def run_phase(place: Place, plan: Plan, phase: Phase, seed: int) -> None:
    bootstrap, sim, work = place.bootstrap, place.sim, place.work
    sim.configure(rpm=phase.rpm)
    sim.reset()
    prefix = f"latency-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {f"{prefix}.in": PARTITIONS, f"{prefix}.out": PARTITIONS,
                              f"{prefix}.dlq": 1, f"{prefix}.alerts": 1})  # fmt: skip
    pacer = Pacer(bootstrap, [Stream(f"{prefix}.in", Reviews(seed))], phase.rate)
    group = f"{prefix}-group"
    config = processor_config(
        bootstrap, group, [route(prefix)], sim.url, prefix=prefix,
        model={"rpm": phase.rpm, "tpm": TPM, "cache_entries": 0, **phase.model},
    )  # fmt: skip
    proc = ProcessorProcess(config, work, name=f"latency-{seed}")
    reader = Outputs(bootstrap, {f"{prefix}.out": PARTITIONS}, pacer)
    lag = LagMeter(bootstrap, group, {f"{prefix}.in": PARTITIONS})
    try:
        proc.wait_ready()
        reader.start()
        started_ms = time.time() * 1000
        started = time.monotonic()
        pacer.start()
        half_at, half_count = started + plan.seconds / 2, 0
        while (now := time.monotonic()) < started + plan.seconds:
            time.sleep(min(5.0, started + plan.seconds - now))
            phase.lag.append(lag())
            if not half_count and time.monotonic() >= half_at:
                half_count, half_at = reader.count, time.monotonic()
        phase.out_rate = (reader.count - half_count) / (time.monotonic() - half_at)
        pacer.stop()
        deadline = time.monotonic() + SETTLE_S
        while reader.count < len(pacer.appended) and time.monotonic() < deadline:
            time.sleep(0.25)
        values = proc.metrics()
        calls = metric(values, "sluicegate_model_seconds_count")
        phase.call_s = metric(values, "sluicegate_model_seconds_sum") / max(calls, 1)
        phase.requests = metric(values, "sluicegate_model_requests_total", status="ok")
        phase.rejected = int(sim.stats()["by_status"].get("429", 0))
    finally:
        proc.stop()
        pacer.close()
        reader.stop()
        lag.close()
    phase.sent = len(pacer.appended)
    arrivals = reader.since(0)
    phase.answered = len(arrivals)
    phase.missing = phase.sent - phase.answered
    phase.latencies = [
        a.latency_ms for a in arrivals if a.at_ms - a.latency_ms >= started_ms + WARM_S * 1000
    ]


def measure(plan: Plan) -> tuple[list[Phase], str]:
    phases = plan.phases()
    sim_settings = SimulatorSettings(rpm=plan.rpms[0], tpm=TPM, latency_median_ms=plan.latency_ms,
                                     latency_sigma=0.0, seed=5)  # fmt: skip
    with kafka() as (bootstrap, kafka_text), simulator(sim_settings) as sim, workdir("lat") as work:
        for seed, phase in enumerate(phases, start=1):
            run_phase(Place(bootstrap, sim, work), plan, phase, seed)
            print(
                f"{phase.name}: {phase.rate:g} events/s in, {phase.out_rate:.1f} out, "
                f"{phase.missing} without an output, lag {phase.lag}",
                flush=True,
            )
    return phases, kafka_text


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rpm", type=int, action="append",
                        help="the model's requests a minute (repeat for more; default: 600 "
                        "and 240)")  # fmt: skip
    parser.add_argument("--latency-ms", type=float, default=300.0, help="the model's answer time")
    parser.add_argument("--seconds", type=float, default=90.0, help="traffic per phase")
    parser.add_argument("--fixed-window", action="store_true",
                        help="also the full-batch phase with batch_idle_ms = 0")  # fmt: skip
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = Plan(
        tuple(args.rpm or (600, 240)), args.latency_ms, args.seconds,
        ModelSettings().batch_max_events, args.fixed_window,
    )  # fmt: skip
    started, load_before = time.monotonic(), os.getloadavg()[0]
    phases, kafka_text = measure(plan)
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    facts = Facts(kafka_text, load, command, when, time.monotonic() - started)
    text = section(plan, phases, facts)
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
