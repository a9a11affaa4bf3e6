"""Start-up: the time to import what each variant of the sustained benchmark runs, side by
side, and which of sluicegate's optional libraries a route makes it import.

    python -m tests.bench.startup [--rounds 5] [--write FILE]

Each figure is a fresh interpreter, timed from spawn to exit (median of the rounds, the
variants taking turns): ``sluicegate --help`` (the command line and everything it
imports), a ``task`` route's processor built from ``examples/tasks.toml`` (no broker, no
model needed to build it), the imports of the guide's asyncio script and of the Quix
Streams app (from its own virtualenv). ``-X importtime`` of ``sluicegate --help`` names
the slowest imports.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.report import host, publish
from tests.bench.sustained import QUIX_PYTHON, ROOT

SECTION = "startup"
HEAVY = ("sklearn", "vaderSentiment", "drain3", "profanity_check")
BUILD = """
import sys
from stream.config import load
from stream.model.service import ModelService
from stream.routes import build_routes
from stream.runtime.processor import Processor

settings = load({path!r}, model={{"base_url": "http://127.0.0.1:9/v1", "api_key": "k"}})
service = ModelService(settings)
handlers = {{r.settings.name: r.handler for r in build_routes(settings, model=service)}}
Processor(settings, handlers, model=service)
{touch}
print(" ".join(m for m in {heavy!r} if m in sys.modules) or "none")
"""
# The local tier's libraries load on a route's first use of them: touch them as an event
# would, so that a sentiment, moderation or logs route shows what it really imports.
TOUCH = "from handlers import local; local.vader(); local.profanity()"


def variants() -> list[tuple[str, list[str]]]:
    py = sys.executable
    out = [
        ("`sluicegate --help`", [py, "-m", "stream", "--help"]),
        ("a `task` route's processor built (examples/tasks.toml)",
         [py, "-c", BUILD.format(path="examples/tasks.toml", touch="", heavy=HEAVY)]),
        ("the demo's routes (sentiment, moderation, logs) built, local tier loaded "
         "(examples/sluicegate.toml)",
         [py, "-c", BUILD.format(path="examples/sluicegate.toml", touch=TOUCH, heavy=HEAVY)]),
        ("the guide's script: `import asyncio, confluent_kafka, openai`",
         [py, "-c", "import asyncio, confluent_kafka, openai"]),
    ]  # fmt: skip
    if QUIX_PYTHON.exists():
        out.append(("Quix Streams: `import quixstreams, openai` (its own virtualenv)",
                    [str(QUIX_PYTHON), "-c", "import quixstreams, openai"]))  # fmt: skip
    return out


def once(argv: list[str]) -> tuple[float, str]:
    """Seconds from spawn to exit, and the last line printed."""
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    return time.perf_counter() - started, lines[-1] if lines else ""


def slowest_imports(n: int = 6) -> list[tuple[str, float]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "stream", "--help"],
                          cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            depth = (len(name) - len(name.lstrip())) // 2
            if depth == 1:  # what sluicegate's own modules import directly, cumulative
                rows.append((name.strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    load_before, started = os.getloadavg()[0], time.monotonic()
    cases = variants()
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    heavy: dict[str, str] = {}
    for _ in range(args.rounds):
        for name, argv_ in cases:
            seconds, last = once(argv_)
            times[name].append(seconds)
            if "built" in name:
                heavy[name] = last
    imports = slowest_imports()
    base = statistics.median(times[cases[0][0]])
    lines = ["| variant | seconds (median) | vs `sluicegate --help` | each round | optional "
             "libraries imported |", "|---|---:|---:|---|---|"]  # fmt: skip
    for name, _ in cases:
        med = statistics.median(times[name])
        rounds = ", ".join(f"{t:.2f}" for t in times[name])
        lines.append(f"| {name} | {med:.2f} | {med / base:.2f} | {rounds} | "
                     f"{heavy.get(name, '-')} |")  # fmt: skip
    slow = ", ".join(f"`{m}` {s:.2f} s" for m, s in imports)
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"""\
## Start-up: import and build time next to the peers

A fresh interpreter per figure, spawn to exit, median of {args.rounds} rounds with the
variants taking turns (the resident memory of the running processes is in the sustained
benchmark's footprint table). *Optional libraries*: which of {", ".join(HEAVY)} were in
`sys.modules` once the processor was built (and, for the demo's routes, once the local
tier was first used, as by a first event).

{chr(10).join(lines)}

- The slowest imports under `sluicegate --help` (`python -X importtime -m stream --help`,
  cumulative, one run): {slow}.
- Machine: {host()}; load average {load_before:.2f} before the run,
  {os.getloadavg()[0]:.2f} after (other work shares the 2 cores: compare the ratios).
- Measured {when}, {time.monotonic() - started:.0f} s in all, with the command `{command}`.
"""
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
