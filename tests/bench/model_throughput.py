"""Model-bound throughput: sluicegate's model service against the plain openai SDK.

    python -m tests.bench.model_throughput [--events N] [--rpm R] [--tpm T] [--write FILE]

The OpenAI simulator (its own process) answers in 300 ms (median) within R requests and
T tokens a minute. The same N sentiment events (reviews, each made distinct so that no
answer can be shared) go through three clients in turn, each starting with the minute's
allowance already spent: sluicegate's ModelService (micro-batching, the RPM/TPM budget,
adaptive concurrency; the response cache off); a plain loop, one request per event and
one at a time; and an unbounded ``asyncio.gather`` of one-event requests, the SDK
retrying 429s as it does by default. Each is measured against the ceiling the limits
allow it: min(R, T / tokens per request) requests a minute, times its events per request.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from handlers.sentiment import TASK
from stream.model.service import ModelService
from stream.simulator.settings import SimulatorSettings
from tests.bench.model_workload import (
    DATA,
    FILES,
    ask_plain,
    interleaved,
    machine,
    plain_client,
    service_settings,
)
from tests.bench.report import publish
from tests.bench.simulated import simulator

SECTION = "model-throughput"


@dataclass(frozen=True)
class Plan:
    events: int
    rpm: int
    tpm: int
    latency_ms: float
    loop_seconds: float
    seed: int


@dataclass(frozen=True)
class Outcome:
    """What one client did: events it took on, answered, lost, in how long, and how
    many completion tokens each of its requests reserved."""

    sent: int
    answered: int
    seconds: float
    reserved: int

    @property
    def lost(self) -> int:
        return self.sent - self.answered


@dataclass(frozen=True)
class Row:
    name: str
    outcome: Outcome
    stats: dict[str, Any]
    plan: Plan

    @property
    def ok(self) -> int:
        return int(self.stats["by_status"].get("200", 0))

    @property
    def calls(self) -> int:
        return int(self.stats["requests"])

    @property
    def rejected(self) -> int:
        return int(self.stats["by_status"].get("429", 0))

    @property
    def rate(self) -> float:
        return self.outcome.answered / self.outcome.seconds

    @property
    def per_request(self) -> float:
        """Events per answered request."""
        return self.outcome.answered / self.ok if self.ok else 0.0

    @property
    def usage(self) -> float:
        """Tokens per answered request, as ``usage`` reports them."""
        tokens = float(self.stats["prompt_tokens"] + self.stats["completion_tokens"])
        return tokens / max(1, self.ok)

    @property
    def counted(self) -> float:
        """Tokens per request as the TPM limit counts them: the prompt and the
        completion tokens reserved (``max_completion_tokens``), used or not."""
        return float(self.stats["prompt_tokens"]) / max(1, self.ok) + self.outcome.reserved

    @property
    def ceiling(self) -> float:
        """Events/s the limits allow this client."""
        requests_per_min = min(self.plan.rpm, self.plan.tpm / self.counted)
        return requests_per_min / 60 * max(1.0, self.per_request)

    @property
    def binding(self) -> str:
        return "RPM" if self.plan.rpm <= self.plan.tpm / self.counted else "TPM"


def distinct(texts: list[str], n: int) -> list[str]:
    """``n`` events from ``texts``, numbered so that no two are the same text."""
    return [f"[{i}] {texts[i % len(texts)]}" for i in range(n)]


async def sluicegate(url: str, texts: list[str], plan: Plan) -> Outcome:
    """Every event asked of ModelService at once, as a processor with them in flight."""
    settings = service_settings(url, rpm=plan.rpm, tpm=plan.tpm, cache_entries=0)
    service = ModelService(settings)
    budget = service.client.budget
    for bucket in (budget.requests, budget.tokens):
        bucket.take(bucket.level)  # spent, as the server's: a minute into the run
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(service.ask(TASK, text, route="bench") for text in texts), return_exceptions=True
        )
        seconds = time.monotonic() - started
    finally:
        await service.aclose()
    failed = sum(isinstance(r, BaseException) for r in results)
    return Outcome(len(texts), len(texts) - failed, seconds, settings.model.max_completion_tokens)


async def answers(client: openai.AsyncOpenAI, text: str) -> bool:
    """Whether the plain call answered (else the event is lost)."""
    try:
        await ask_plain(client, TASK, text)
    except Exception:  # noqa: BLE001 - every failure is a lost event, counted
        return False
    return True


async def plain_loop(url: str, texts: list[str], plan: Plan) -> Outcome:
    """One event at a time; stops taking new events after ``loop_seconds``."""
    answered = sent = 0
    async with plain_client(url) as client:
        started = time.monotonic()
        for text in texts:
            if time.monotonic() - started >= plan.loop_seconds:
                break
            sent += 1
            answered += await answers(client, text)
        seconds = time.monotonic() - started
    return Outcome(sent, answered, seconds, SimulatorSettings().default_max_completion_tokens)


async def plain_gather(url: str, texts: list[str], plan: Plan) -> Outcome:
    """Every event its own request, all at once."""
    async with plain_client(url) as client:
        started = time.monotonic()
        results = await asyncio.gather(
            *(ask_plain(client, TASK, text) for text in texts), return_exceptions=True
        )
        seconds = time.monotonic() - started
    failed = sum(isinstance(r, BaseException) for r in results)
    return Outcome(
        len(texts), len(texts) - failed, seconds, SimulatorSettings().default_max_completion_tokens
    )


Client = Callable[[str, list[str], Plan], Awaitable[Outcome]]
VARIANTS: list[tuple[str, Client]] = [
    ("sluicegate ModelService", sluicegate),
    ("plain SDK, one request at a time", plain_loop),
    ("plain SDK, unbounded gather", plain_gather),
]


async def measure(plan: Plan, texts: list[str]) -> list[Row]:
    sim_settings = SimulatorSettings(
        rpm=plan.rpm, tpm=plan.tpm, latency_median_ms=plan.latency_ms, seed=plan.seed
    )
    rows = []
    async with simulator(sim_settings) as sim:
        for name, client in VARIANTS:
            await sim.reset()
            await sim.drain()
            outcome = await client(sim.url, texts, plan)
            row = Row(name, outcome, await sim.stats(), plan)
            rows.append(row)
            print(
                f"{name:<34} {outcome.seconds:5.1f} s {row.rate:>7.1f} events/s  "
                f"{row.rate / row.ceiling:.2f} of its ceiling  {row.rejected}/{row.calls} "
                f"calls 429  {outcome.lost} lost",
                flush=True,
            )
    return rows


def table(rows: list[Row]) -> str:
    ours = rows[0].rate
    lines = [
        "| client | events | seconds | events/s | vs sluicegate | events/request | "
        "tokens/request: usage (counted by the limit) | ceiling events/s | of the ceiling | "
        "calls answered 429 | events lost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = r.rejected / r.calls if r.calls else 0.0
        lines.append(
            f"| {r.name} | {r.outcome.sent:,} | {r.outcome.seconds:.1f} | {r.rate:,.1f} | "
            f"{r.rate / ours:.3f} | {r.per_request:.1f} | {r.usage:,.0f} ({r.counted:,.0f}) | "
            f"{r.ceiling:,.1f} ({r.binding}) | {r.rate / r.ceiling:.2f} | {share:.1%} "
            f"({r.rejected:,} of {r.calls:,}) | {r.outcome.lost:,} |"
        )
    return "\n".join(lines)


def section(
    plan: Plan, rows: list[Row], command: str, seconds: float, load: tuple[float, float]
) -> str:
    d = service_settings("http://unused/v1").model
    sim_reserve = SimulatorSettings().default_max_completion_tokens
    files = " and ".join(f"`{f}`" for f in FILES)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""\
## Model-bound throughput: sluicegate's model service vs the plain openai SDK

How close each client comes to what the provider's rate limits allow when the model is
the bottleneck. The OpenAI simulator answers in {plan.latency_ms:.0f} ms (median, lognormal)
and allows {plan.rpm:,} requests and {plan.tpm:,} tokens a minute. The events are the
sentiment task (about 1,000 tokens of static instructions) on the reviews of
`../shared/datasets/sentiment` ({files}, in turn), each numbered so that no two events
are the same text. Every client starts with the minute's allowance already spent (the
simulator's and, for sluicegate, its own budget's), as a minute into a long run: the
figures are the sustained rate, not the burst a full bucket gives at the start.

{table(rows)}

- *ceiling*: min(RPM, TPM / tokens per request) requests a minute, times the client's
  events per request. The TPM limit counts a request's prompt and the completion tokens
  it reserves, used or not: sluicegate sends `max_completion_tokens`
  {d.max_completion_tokens}, the plain SDK sends none and the simulator reserves
  {sim_reserve}. So *counted* is the measured prompt tokens plus the reservation, and
  *usage* is prompt + completion as the answers report them. The plain clients send one
  event per request: their ceiling is the limits' request rate; sluicegate's is that
  rate times its batch.
- *sluicegate ModelService*: the default settings (batches of up to
  {d.batch_max_events} events or {d.batch_max_tokens:,} tokens of text after
  {d.batch_wait_ms:g} ms, fewer when their answers might not fit in the request's
  `max_completion_tokens`; concurrency from {d.initial_concurrency}, between
  {d.min_concurrency} and {d.max_concurrency}; {d.max_attempts} attempts per call) with
  `rpm` and `tpm` set to the limits and the response cache off. All {plan.events:,}
  events are asked at once, as by a processor holding them in flight; an ask that
  raises is a lost event.
- *plain SDK, one request at a time*: `AsyncOpenAI` as it comes, one
  `chat.completions.parse(response_format=<the output model>)` per event. It takes new
  events for {plan.loop_seconds:g} s (all of them would take far longer); its rate is
  the events answered over that time.
- *plain SDK, unbounded gather*: the same call for all {plan.events:,} events at once.
  The SDK retries a 429 twice (its default) after the simulator's `retry-after`; an
  event whose last attempt fails is lost. It keeps the limit busy only by hammering it:
  most calls are refused and most events lost.
- Machine: {machine()};
  load average {load[0]:.2f} before the run, {load[1]:.2f} after.
- Measured {when}, {seconds:.0f} s in all, with the command `{command}`.
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1200, help="events per client")
    parser.add_argument("--rpm", type=int, default=600, help="requests per minute")
    parser.add_argument("--tpm", type=int, default=2_000_000, help="tokens per minute")
    parser.add_argument("--latency-ms", type=float, default=300.0, help="median answer time")
    parser.add_argument(
        "--loop-seconds", type=float, default=10.0, help="how long the one-at-a-time loop runs"
    )
    parser.add_argument("--seed", type=int, default=7, help="the simulator's latency draws")
    parser.add_argument("--data", type=Path, default=DATA, help="the sentiment samples")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = Plan(args.events, args.rpm, args.tpm, args.latency_ms, args.loop_seconds, args.seed)
    texts = distinct(interleaved(args.data), plan.events)
    started, load_before = time.monotonic(), os.getloadavg()[0]
    rows = asyncio.run(measure(plan, texts))
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    text = section(plan, rows, command, time.monotonic() - started, load)
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
