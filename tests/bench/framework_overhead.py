"""Framework overhead: sluicegate's runtime against a plain confluent-kafka loop.

    python -m tests.bench.framework_overhead [--events N] [--rounds R] [--write FILE]

One broker (``KAFKA_BOOTSTRAP_SERVERS``, else a local one started for the run); each
variant copies the same N events of 1 KB JSON from a fresh 3-partition topic to another:
the plain loop, then sluicegate at-least-once and exactly-once with an instant handler,
first with the default settings, then with the in-flight bounds raised. Rounds are
interleaved so that drift on a shared machine hits every variant alike; every run's
output is read back and must hold each event exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ops.kafka import broker
from stream.config import Guarantee, ProcessingSettings
from stream.kafka.sink import LINGER_MS
from tests.bench.plain_loop import run_plain
from tests.bench.report import Variant, machine, table, write_section
from tests.bench.runtime_loop import bench_settings, run_sluicegate
from tests.bench.workload import (
    MESSAGE_BYTES,
    PARTITIONS,
    create_topics,
    delete_topics,
    events,
    fill,
    fresh_name,
    verify,
)

# Unreported runs first, so that the broker's JIT is warm for the first round: each variant
# on a few events, then the (quick) plain loop on all of them.
WARMUP_EVENTS = 5_000
RAISED = ("max_in_flight", "max_in_flight_per_partition", "max_poll_records")


@dataclass(frozen=True)
class Setup:
    """How one variant runs: the plain loop, or sluicegate with a guarantee and settings."""

    name: str
    guarantee: Guarantee | None = None  # None: the plain loop
    processing: dict[str, int] = field(default_factory=dict)


def setups(raised: dict[str, int]) -> list[Setup]:
    return [
        Setup("plain confluent-kafka loop"),
        Setup("sluicegate at-least-once, defaults", "at-least-once"),
        Setup("sluicegate exactly-once, defaults", "exactly-once"),
        Setup("sluicegate at-least-once, raised bounds", "at-least-once", raised),
        Setup("sluicegate exactly-once, raised bounds", "exactly-once", raised),
    ]


@contextlib.contextmanager
def kafka() -> Iterator[tuple[str, str]]:
    """(bootstrap, description) of the broker: the given one, else a local one for the run."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        known = broker.current(broker.default_state_dir())
        if known is not None and known.bootstrap == given:
            yield given, f"Apache Kafka {known.version} (make kafka-up, same machine)"
        else:
            yield given, f"the Kafka broker at {given} (version not known to the bench)"
        return
    with broker.running() as local:
        yield local.bootstrap, f"Apache Kafka {local.version} (local broker, same machine)"


def one_run(
    setup: Setup, bootstrap: str, records: list[tuple[bytes | None, bytes]]
) -> tuple[float, int | None]:
    """Fresh topics filled with ``records``, one measured copy, the output verified;
    returns events/s and (sluicegate) how many partition pauses backpressure made."""
    n = len(records)
    limit_s = 120 + n / 500
    source, output = fresh_name("in"), fresh_name("out")
    create_topics(bootstrap, [source, output])
    try:
        fill(bootstrap, source, records)
        gc.collect()
        pauses = None
        if setup.guarantee is None:
            rate = run_plain(bootstrap, source, output, n, limit_s)
        else:
            settings = bench_settings(
                bootstrap,
                source,
                output,
                exactly_once=setup.guarantee == "exactly-once",
                processing=setup.processing,
            )
            rate, stats = asyncio.run(run_sluicegate(settings, n, limit_s))
            pauses = stats.pauses
        verify(bootstrap, output, n, setup.name)
    finally:
        delete_topics(bootstrap, [source, output])
    return rate, pauses


def settings_note(raised: dict[str, int]) -> str:
    d = ProcessingSettings()
    bounds = ", ".join(f"`{k}` {v}" for k, v in raised.items())
    return (
        f"*defaults* are a user's settings untouched: `max_in_flight` {d.max_in_flight}, "
        f"`max_in_flight_per_partition` {d.max_in_flight_per_partition}, `max_poll_records` "
        f"{d.max_poll_records}, `commit_interval_ms` {d.commit_interval_ms}, producer "
        f"`linger.ms` {LINGER_MS} and `compression.type` lz4. *raised bounds* change only "
        f"{bounds}. "
        "Every sluicegate row has one route with `unordered` ordering, an instant handler "
        "and metrics off. The plain loop uses confluent-kafka's defaults plus "
        "`enable.idempotence`, `consume(500)` and async commits every second."
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per run")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each variant")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    raised = parser.add_argument_group("the raised bounds of the last two variants")
    raised.add_argument("--max-in-flight", type=int, default=20_000)
    raised.add_argument("--max-in-flight-per-partition", type=int, default=10_000)
    raised.add_argument("--max-poll-records", type=int, help="(default: not raised)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    raised = {k: getattr(args, k) for k in RAISED if getattr(args, k) is not None}
    plan = setups(raised)
    variants = [Variant(s.name) for s in plan]
    records = events(args.events)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with kafka() as (bootstrap, kafka_text):
        for setup in plan:
            one_run(setup, bootstrap, records[:WARMUP_EVENTS])
        one_run(plan[0], bootstrap, records)
        print("warm-up done", flush=True)
        for r in range(1, args.rounds + 1):
            for setup, v in zip(plan, variants, strict=True):
                rate, pauses = one_run(setup, bootstrap, records)
                v.rates.append(rate)
                if pauses is not None:
                    v.pauses.append(pauses)
                print(f"round {r}/{args.rounds}  {v.name:<40} {rate:>9,.0f} events/s", flush=True)
    load_after = os.getloadavg()[0]
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""\
## Framework overhead: sluicegate vs a plain confluent-kafka loop

How fast the runtime moves events when the handler costs nothing, against the simplest
consume -> produce loop written directly on confluent-kafka.

Each run copies the same {args.events:,} events of {MESSAGE_BYTES} bytes of JSON from a fresh
{PARTITIONS}-partition topic to another, with a fresh group, and is read back to check that
every event arrived exactly once (`read_committed`). The clock starts at the first
consumed event (group join excluded) and stops when the last output is acknowledged
(exactly-once: committed). Median of {args.rounds} rounds; the variants take turns in every
round.

{table(variants)}

- Settings: {settings_note(raised)}
- Machine: {machine(kafka_text)}; load average {load_before:.2f} before the run,
  {load_after:.2f} after.
- Measured {when}, {time.monotonic() - started:.0f} s in all, with the command
  `{command}`.
"""
    print("\n" + section)
    if args.write is not None:
        write_section(args.write, section)
        print(f"wrote the section into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
