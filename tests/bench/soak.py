"""Soak: ``sluicegate run`` at a steady rate against the simulator for many minutes, with
its memory, its consumer group's lag and the events' latency sampled all along.

    python -m tests.bench.soak [--minutes 10] [--rate 40] [--plot docs/soak.png] [--write FILE]

One broker (``KAFKA_BOOTSTRAP_SERVERS``, else a local one for the run), the simulator in
its own process, the processor as a child process with two routes: generated product
reviews to the ``sentiment`` handler and log lines to the ``logs`` handler (see
``traffic.py``), every setting at its default but the model's address and limits. Every
few seconds: the processor's resident memory, the group's lag (committed offsets against
the high watermarks, read with an admin client), the latency of the outputs that came in
(each output's broker append time minus its input's) and the rates in and out. At the
end the producer stops, the processor must catch up with every event and exit cleanly
on SIGTERM. Flat means the last minute looks like the first.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stream.config import ModelSettings
from stream.simulator.settings import SimulatorSettings
from tests.bench.framework_overhead import kafka
from tests.bench.harness import (
    LagMeter,
    ProcessorProcess,
    create_topics,
    metric,
    processor_config,
    simulator,
    workdir,
)
from tests.bench.load import Arrival, Outputs, Pacer, Stream, percentile, settle
from tests.bench.report import publish
from tests.bench.soak_report import figure, section
from tests.bench.traffic import LogLines, Reviews, review_texts

SECTION = "soak"
PARTITIONS = 3
DRAIN_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Plan:
    minutes: float
    rate: float
    every_s: float
    review_share: float
    rpm: int
    tpm: int
    latency_ms: float
    latency_sigma: float
    data: Path | None
    cache_entries: int


@dataclass
class Sample:
    """One look at the run, ``t_s`` seconds after the producer started."""

    t_s: float
    rss_mib: float
    lag: int
    in_flight: float
    inputs: int  # acknowledged so far
    outputs: int  # distinct outputs read so far
    p50_ms: float  # latency of the outputs read since the last sample
    p99_ms: float
    model_requests: float
    rate_limited: float
    model_answers: int  # outputs the model answered so far: each one a response-cache entry


@dataclass
class Soak:
    plan: Plan
    samples: list[Sample] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    started_ms: float = 0.0
    sent: int = 0
    duplicates: int = 0
    dead_lettered: float = 0.0
    exit_code: int | None = None
    drain_s: float = 0.0
    most_behind_s: float = 0.0
    sim: dict[str, object] = field(default_factory=dict)
    kafka_text: str = ""
    load: tuple[float, float] = (0.0, 0.0)

    def tiers(self) -> Counter[str]:
        return Counter(a.tier for a in self.arrivals)


def routes(prefix: str) -> list[dict[str, object]]:
    return [
        {"name": "reviews", "input_topics": [f"{prefix}.reviews"], "handler": "sentiment",
         "output_topic": f"{prefix}.reviews.enriched", "ordering": "key"},
        {"name": "logs", "input_topics": [f"{prefix}.logs"], "handler": "logs",
         "output_topic": f"{prefix}.logs.enriched", "ordering": "partition"},
    ]  # fmt: skip


@dataclass
class Rig:
    """What one soak runs and watches."""

    proc: ProcessorProcess
    pacer: Pacer
    reader: Outputs
    lag: LagMeter
    seen: int = 0  # arrivals already put into a sample

    def look(self, t_s: float) -> Sample:
        if not self.proc.alive():
            raise RuntimeError(f"the processor exited:\n{self.proc.log_tail()}")
        fresh = self.reader.since(self.seen)
        self.seen += len(fresh)
        latencies = [a.latency_ms for a in fresh]
        values = self.proc.metrics()
        return Sample(
            t_s=t_s,
            rss_mib=self.proc.rss_bytes() / 2**20,
            lag=self.lag(),
            in_flight=metric(values, "sluicegate_in_flight_events"),
            inputs=len(self.pacer.appended),
            outputs=self.reader.count,
            p50_ms=percentile(latencies, 0.5),
            p99_ms=percentile(latencies, 0.99),
            model_requests=metric(values, "sluicegate_model_requests_total", status="ok"),
            rate_limited=metric(values, "sluicegate_model_rate_limited_total"),
            model_answers=self.reader.tiers["model"],
        )


def watch(rig: Rig, soak: Soak) -> None:
    """Traffic for the planned minutes, a sample every ``every_s``; then every input's
    output, and the processor's exit on SIGTERM."""
    plan = soak.plan
    rig.reader.start()
    soak.load = (os.getloadavg()[0], 0.0)
    soak.started_ms = time.time() * 1000
    started = time.monotonic()
    rig.pacer.start()
    next_at = started + plan.every_s
    while next_at <= started + plan.minutes * 60 + 0.001:
        time.sleep(max(0.0, next_at - time.monotonic()))
        next_at += plan.every_s
        sample = rig.look(time.monotonic() - started)
        soak.samples.append(sample)
        print(
            f"{sample.t_s:6.0f}s  rss {sample.rss_mib:6.1f} MiB  lag {sample.lag:5d}  "
            f"in flight {sample.in_flight:5.0f}  out {sample.outputs:7d}  "
            f"p50 {sample.p50_ms:6.0f} ms  p99 {sample.p99_ms:6.0f} ms",
            flush=True,
        )
    rig.pacer.stop()
    soak.sent, soak.most_behind_s = rig.pacer.sent, rig.pacer.most_behind_s
    soak.drain_s, soak.dead_lettered = settle(rig.proc, rig.pacer, rig.reader, DRAIN_TIMEOUT_S)
    soak.exit_code = rig.proc.stop()


def run(plan: Plan) -> Soak:
    soak = Soak(plan)
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    inputs = {f"{prefix}.reviews": PARTITIONS, f"{prefix}.logs": PARTITIONS}
    outputs = {f"{prefix}.reviews.enriched": PARTITIONS, f"{prefix}.logs.enriched": PARTITIONS}
    sim_settings = SimulatorSettings(
        rpm=plan.rpm, tpm=plan.tpm, latency_median_ms=plan.latency_ms,
        latency_sigma=plan.latency_sigma, seed=11,
    )  # fmt: skip
    with (
        kafka() as (bootstrap, soak.kafka_text),
        simulator(sim_settings) as sim,
        workdir("soak") as work,
    ):
        create_topics(bootstrap, {**inputs, **outputs, f"{prefix}.dlq": 1, f"{prefix}.alerts": 1})
        streams = [
            Stream(f"{prefix}.reviews", Reviews(3, review_texts(plan.data)), plan.review_share),
            Stream(f"{prefix}.logs", LogLines(4), 1 - plan.review_share),
        ]
        pacer = Pacer(bootstrap, streams, plan.rate)
        group = f"{prefix}-group"
        config = processor_config(
            bootstrap, group, routes(prefix), sim.url,
            model={"rpm": plan.rpm, "tpm": plan.tpm, "cache_entries": plan.cache_entries},
        prefix=prefix,
        )  # fmt: skip
        rig = Rig(
            ProcessorProcess(config, work),
            pacer,
            Outputs(bootstrap, outputs, pacer),
            LagMeter(bootstrap, group, inputs),
        )
        try:
            rig.proc.wait_ready()
            watch(rig, soak)
            soak.sim = sim.stats()
        finally:
            rig.proc.stop()
            pacer.close()
            rig.reader.stop()
            rig.lag.close()
        soak.arrivals = rig.reader.since(0)
        soak.duplicates = rig.reader.tally.duplicates
        if pacer.failed or rig.reader.tally.unmatched:
            raise RuntimeError(
                f"{pacer.failed} inputs failed, {rig.reader.tally.unmatched} outputs unmatched"
            )
    soak.load = (soak.load[0], os.getloadavg()[0])
    return soak


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long traffic flows")
    parser.add_argument("--rate", type=float, default=40.0, help="events per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--review-share", type=float, default=0.8,
                        help="share of reviews among the events (the rest: log lines)")  # fmt: skip
    parser.add_argument("--rpm", type=int, default=600, help="the model's requests a minute")
    parser.add_argument("--tpm", type=int, default=1_000_000, help="the model's tokens a minute")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="median answer time")
    parser.add_argument("--latency-sigma", type=float, default=0.5, help="its lognormal sigma")
    parser.add_argument("--data", type=Path, default=None,
                        help="reviews to send (CSV with a text column, or JSON lines) "
                        "instead of generated ones")  # fmt: skip
    parser.add_argument("--cache-entries", type=int, default=ModelSettings().cache_entries,
                        help="the response cache's size (default: the product's)")  # fmt: skip
    parser.add_argument("--plot", type=Path, default=Path("docs/soak.png"), help="the PNG")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = Plan(args.minutes, args.rate, args.every, args.review_share, args.rpm, args.tpm,
                args.latency_ms, args.latency_sigma, args.data, args.cache_entries)  # fmt: skip
    started = time.monotonic()
    soak = run(plan)
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    figure(soak, args.plot)
    print(f"plotted {args.plot}")
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    where = args.write.parent if args.write is not None else Path()
    link = os.path.relpath(args.plot, where)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = section(soak, link, command, when, time.monotonic() - started)
    publish(text, args.write, SECTION)
    return 0 if soak.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
