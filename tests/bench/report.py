"""The results as markdown, and the section of BENCHMARKS.md they replace."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka

# The section a benchmark owns is between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``.
DEFAULT_SECTION = "framework-overhead"

INTRO = """\
# Benchmarks

Produced by `make bench`. Each benchmark runs every variant it compares side by side, in
one run: the Kafka benchmark against one broker, interleaving the variants round after
round and reporting medians; the model benchmarks against the OpenAI simulator
(`stream/simulator`) in a process of its own. The absolute numbers belong to the machine
that measured them (a shared 2-core machine, with the broker or the simulator running on
the same machine and competing for the same cores); the **ratios** between variants
measured together are what to compare over time.
"""


@dataclass
class Variant:
    """One measured variant: its events/s in every round, and (sluicegate) how often it
    paused partitions for backpressure."""

    name: str
    rates: list[float] = field(default_factory=list)
    pauses: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def host() -> str:
    """CPUs, operating system and Python of the machine that measured."""
    cpus = len(os.sched_getaffinity(0))
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = f" ({line.split(':', 1)[1].strip()})"
                break
    except OSError:
        pass
    return (
        f"{cpus} CPUs{model}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def machine(kafka: str) -> str:
    """One line saying what measured: CPUs, Python, client and broker versions."""
    return (
        f"{host()}, "
        f"confluent-kafka {importlib.metadata.version('confluent-kafka')} "
        f"(librdkafka {confluent_kafka.libversion()[0]}), {kafka}"
    )


def table(variants: list[Variant]) -> str:
    """Median events/s per variant and its ratio to the first (the plain loop)."""
    base = variants[0].median
    lines = [
        "| variant | events/s (median) | vs plain loop | each round (events/s) | pauses per run |",
        "|---|---:|---:|---|---:|",
    ]
    for v in variants:
        rounds = ", ".join(f"{r:,.0f}" for r in v.rates)
        pauses = f"{statistics.median(v.pauses):.0f}" if v.pauses else "-"
        lines.append(
            f"| {v.name} | {v.median:,.0f} | {v.median / base:.2f} | {rounds} | {pauses} |"
        )
    return "\n".join(lines)


def publish(text: str, path: Path | None, name: str) -> None:
    """Print a benchmark's section, and write it into ``path`` (``--write``) if given."""
    print("\n" + text)
    if path is not None:
        write_section(path, text, name)
        print(f"wrote the section into {path}")


def write_section(path: Path, section: str, name: str = DEFAULT_SECTION) -> None:
    """Put ``section`` between the markers of ``name`` in ``path`` (created with an intro
    if missing), replacing what was there; anything outside the markers is kept."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{section.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else INTRO
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
