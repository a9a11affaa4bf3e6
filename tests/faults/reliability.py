"""Run every fault scenario and bad-input class; write the table of RELIABILITY.md.

    python -m tests.faults.reliability [--only NAME ...] [--write RELIABILITY.md]

Starts a local broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``) and, per model scenario, a
fresh simulator in this process; the broker-restart scenario starts a broker of its own.
``--write`` replaces the section between ``<!-- reliability:start -->`` and
``<!-- reliability:end -->`` and needs the full run; ``--only`` prints its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.kafka import broker as local_kafka
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings
from tests.bench.report import host, write_section
from tests.faults.lab import Lab, Tally
from tests.faults.scenarios import BY_NAME, SCENARIOS, Scenario

SECTION = "reliability"
Rows = list[tuple[Scenario, list[Tally]]]

INTRO = """\
# Reliability

What becomes of events when things go wrong, measured: every fault and every class of
bad input tried against a real Apache Kafka broker (`ops/kafka`) and the OpenAI-compatible
simulator (`stream/simulator`). Each row counts the events that went in, came out
enriched, went to the dead-letter topic, and were lost. Events are counted by source
offset: every output and every DLQ record names the input it came from
(`sluicegate.source.*` headers), so an input offset found in neither is lost, whatever
the processor's own counters say. **Lost must be 0 on every row.**

`make reliability` reruns everything and rewrites the section below; each row names a
command that reproduces it alone (run from the repository root with `.venv/bin/`). The
`tests/faults` tests, part of `make test`, assert the same on every run: nothing lost,
and what each fault promises (below the tables).
"""


async def _with_simulator(scenario: Scenario, lab: Lab) -> Tally | list[Tally]:
    assert scenario.run_async is not None
    async with running_simulator(SimulatorSettings(port=0, seed=11)) as url:
        return await scenario.run_async(replace(lab, simulator=url))


def run(selected: Sequence[Scenario]) -> Rows:
    """Run the scenarios one after the other; their tallies in the same order."""
    rows: Rows = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sg-faults-")))
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        if not bootstrap and any(s.needs != "broker" for s in selected):
            bootstrap = stack.enter_context(local_kafka.running()).bootstrap
        for scenario in selected:
            print(f"[reliability] {scenario.name} ...", file=sys.stderr, flush=True)
            lab = Lab(bootstrap, workdir)
            if scenario.run_sync is not None:
                result: Tally | list[Tally] = scenario.run_sync(lab)
            else:
                result = asyncio.run(_with_simulator(scenario, lab))
            tallies = result if isinstance(result, list) else [result]
            for t in tallies:
                print(f"[reliability]   {t.name}: in {t.events_in}, out {t.out}, "
                      f"dead {t.dead}, lost {t.lost} ({t.seconds:.0f} s)",
                      file=sys.stderr, flush=True)  # fmt: skip
            rows.append((scenario, tallies))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _commands(scenario: Scenario) -> str:
    return "<br>".join(f"`{c}`" for c in scenario.commands())


def _fact(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_fact(v) for v in value) + "]"
    return str(value)


def render(rows: Rows, took_s: float) -> str:
    """The generated section: when and where, the two tables, the facts of each fault."""
    faults = [(s, t) for s, ts in rows for t in ts if s.name != "bad-input"]
    bad = [(s, t) for s, ts in rows for t in ts if s.name == "bad-input"]
    lost = sum(t.lost for _, ts in rows for t in ts)
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {host()}, Apache Kafka "
        f"{local_kafka.KAFKA_VERSION} (one local broker), the simulator in the runner's "
        f"process; {took_s / 60:.1f} min in all. **Lost: {lost}.**",
        "",
        "## Faults",
        "",
        "At-least-once rows read the output as it is (an event processed twice counts "
        "once in *out* and once in *duplicated*); the exactly-once row reads it with "
        "`isolation.level=read_committed`.",
        "",
        "| fault | cases | events in | out | dead-lettered | lost | duplicated | notes "
        "| reproduce |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for s, t in faults:
        lines.append(
            f"| {_cell(t.name)} | {s.cases} | {t.events_in:,} | {t.out:,} | {t.dead:,} | "
            f"{t.lost} | {t.duplicated} | {_cell(t.notes)} | {_commands(s)} |"
        )
    if bad:
        lines += [
            "",
            "## Bad input",
            "",
            "The generated corpus of `tests/handlers/corpus.py`, each class over the three "
            "input kinds (reviews, posts, JSON logs) through the whole runtime, a good event "
            "after every bad one. *Events in* of a class are its cases.",
            "",
            "| bad input class | cases | events in | out | dead-lettered | lost | notes "
            "| reproduce |",
            "|---|---:|---:|---:|---:|---:|---|---|",
        ]
        for s, t in bad:
            cases = "-" if t.cases is None else f"{t.cases:,}"
            lines.append(
                f"| {_cell(t.name)} | {cases} | {t.events_in:,} | {t.out:,} | {t.dead:,} | "
                f"{t.lost} | {_cell(t.notes)} | {_commands(s)} |"
            )
    lines += ["", "## What each fault measured", ""]
    for s, t in faults:
        facts = "; ".join(f"{k}: {_fact(v)}" for k, v in t.facts.items())
        lines.append(f"- **{s.name}** ({t.seconds:.0f} s): {facts}")
    return "\n".join(lines) + "\n"


def write(path: Path, section: str) -> None:
    if not path.exists():
        path.write_text(INTRO)
    write_section(path, section, SECTION)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.reliability",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), metavar="NAME",
                        help="run only this scenario (repeatable), print its rows; one of "
                        f"{', '.join(s.name for s in SCENARIOS)}")  # fmt: skip
    parser.add_argument("--write", type=Path, metavar="FILE",
                        help="replace the reliability section of FILE")  # fmt: skip
    args = parser.parse_args(argv)
    if args.write is not None and args.only:
        parser.error("--write rewrites the whole table: run every scenario (no --only)")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tests.faults.clients").setLevel(logging.CRITICAL)
    selected = [BY_NAME[n] for n in args.only] if args.only else list(SCENARIOS)
    began = time.monotonic()
    rows = run(selected)
    section = render(rows, time.monotonic() - began)
    print(section)
    if args.write is not None:
        write(args.write, section)
        print(f"wrote the {SECTION} section into {args.write}", file=sys.stderr)
    return 1 if any(t.lost for _, ts in rows for t in ts) else 0


if __name__ == "__main__":
    sys.exit(main())
