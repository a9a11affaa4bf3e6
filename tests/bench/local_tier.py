"""The local tier's cost to the processor: one backlog of reviews, the ``sentiment`` route
with its local tier off and on, side by side in one run.

    python -m tests.bench.local_tier [--events 2000] [--write FILE]

Two settings of the simulator: *model-bound* (600 requests a minute, the minute's
allowance spent at the start, as in the sustained benchmark) and *unbound* (a limit no run
reaches, so that the processor's own work decides the speed). In each, the two variants
run one after the other against a fresh topic; the figures are events/s, the CPU time of
the ``sluicegate run`` process per 1,000 events, and the share the local tier answered
(read from the outputs' ``enrichment.source`` by an independent consumer).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from stream.simulator.settings import SimulatorSettings
from tests.bench.framework_overhead import kafka
from tests.bench.harness import simulator, workdir
from tests.bench.model_throughput import distinct
from tests.bench.model_workload import DATA, interleaved
from tests.bench.report import machine, publish
from tests.bench.sustained import PARTITIONS, Bench, Plan, Result, one_run, warm_up

SECTION = "local-tier"
VARIANTS = (("sluicegate", "local tier off"), ("sluicegate-local", "local tier on"))
SETTINGS = (("model-bound", 600, 2_000_000), ("unbound", 1_000_000, 1_000_000_000))


def local_share(row: Result) -> float:
    total = sum(row.answered_by.values())
    return row.answered_by.get("local", 0) / total if total else 0.0


def added(rows: list[tuple[str, Result, Result]]) -> str:
    """The local tier's CPU per event, on minus off, in ms, per simulator setting."""
    parts = []
    for setting, off, on in rows:
        if off.outputs and on.outputs:
            ms = (on.cpu_s / on.outputs - off.cpu_s / off.outputs) * 1000
            parts.append(f"{ms:.2f} ms {setting}")
    return ", ".join(parts) or "-"


def table(rows: list[tuple[str, Result, Result]]) -> str:
    lines = [
        "| simulator | variant | events out | events/s | **vs local tier off** | CPU s per "
        "1,000 events | **CPU vs off** | answered locally | events lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, off, on in rows:
        for r in (off, on):
            cpu_k = r.cpu_s / r.outputs * 1000 if r.outputs else float("nan")
            off_k = off.cpu_s / off.outputs * 1000 if off.outputs else float("nan")
            lines.append(
                f"| {setting} | {r.name} | {r.outputs:,} | {r.rate:.1f} | "
                f"**{r.rate / off.rate:.2f}** | {cpu_k:.2f} | **{cpu_k / off_k:.2f}** | "
                f"{local_share(r):.1%} | {r.lost:,} of {r.consumed:,} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds a variant may take")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    args = parser.parse_args(argv)
    texts = distinct(interleaved(args.data), args.events)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    rows = []
    with kafka() as (bootstrap, kafka_text), workdir("local") as work:
        warm_up(bootstrap)
        for setting, rpm, tpm in SETTINGS:
            plan = Plan(args.events, rpm, tpm, 300.0, args.cap, 1)
            sim_settings = SimulatorSettings(rpm=rpm, tpm=tpm, latency_median_ms=300.0, seed=5)
            with simulator(sim_settings) as sim:
                bench = Bench(plan, bootstrap, sim, work, texts)
                done = []
                for name, label in VARIANTS:
                    row = replace(one_run(bench, name, label), name=label)
                    print(f"{setting:<12} {label:<15} {row.outputs:6d} out in {row.seconds:6.1f}s"
                          f" = {row.rate:7.1f}/s  cpu {row.cpu_s:6.1f}s  local "
                          f"{local_share(row):.1%}  lost {row.lost}", flush=True)  # fmt: skip
                    done.append(row)
            rows.append((setting, done[0], done[1]))
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""\
## The local tier's cost: the same backlog with the local tier off and on

A backlog of {args.events:,} reviews (numbered, so that no two are the same text) on a
fresh {PARTITIONS}-partition topic, enriched by one `sluicegate run` process with the
route `sentiment`, `unordered` ordering and the response cache off; the local tier off,
then on. Answers take 300 ms (median, lognormal). *model-bound*: 600 requests and
2,000,000 tokens a minute, the minute's allowance spent at the start; *unbound*: a
limit no run reaches, so the processor's own work decides the speed. *Local tier on*
is the route's default: the learned tier, which scores and trains off the event loop
on a bounded share of each text and answers only once audited agreement with the model
proves it (against the simulator's answers it never does here: 0% local is that policy
deferring, and the CPU is its scoring of every event and training on every answer, in
batches: scoring within 5 ms, training every 512 answers or 5 s).

{table(rows)}

- *Added by the local tier*: {added(rows)} of CPU per event (on minus off).

- *CPU s per 1,000 events*: user + system time of the `sluicegate run` process between
  its assignment and the last output, from `/proc/<pid>/stat`, over the outputs.
  *Answered locally*: outputs whose `enrichment.source` is `local`, read back by an
  independent consumer. *Lost*: inputs below the group's committed offsets with
  neither an output nor a dead letter.
- Machine: {machine(kafka_text)}; the simulator, the broker and the processor on the same
  machine; load average {load[0]:.2f} before the run, {load[1]:.2f} after.
- Measured {when}, {time.monotonic() - started:.0f} s in all, with the command
  `{command}`.
"""
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
