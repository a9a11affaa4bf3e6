"""Tokens and dollars per 1,000 sentiment events: sluicegate against the plain SDK.

    python -m tests.bench.token_cost [--data DIR] [--repeats SHARE] [--write FILE]

The same reviews go through the plain openai SDK, one request per event (no batching,
no response cache), and through sluicegate's ModelService with its defaults
(micro-batching and the response cache), against the OpenAI simulator, which bills
like the provider: ``usage`` with the prompt prefix it has seen before reported as
``prompt_tokens_details.cached_tokens``. Every request is read as it leaves, to split
the prompt into the static instructions, the events' own text and the framing around
them; the dollars are the simulator's counts priced by sluicegate's cost meter.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
from openai.lib._pydantic import to_strict_json_schema

from handlers.model import Task
from handlers.sentiment import TASK
from stream.config import BudgetSettings, Prices
from stream.model.client import strict_schema
from stream.model.cost import cost_usd
from stream.model.prompt import parse_events
from stream.model.service import ModelService
from stream.model.tokens import CHARS_PER_TOKEN, estimate_tokens
from stream.simulator.settings import SimulatorSettings
from tests.bench.model_workload import (
    DATA,
    FILES,
    ask_plain,
    interleaved,
    machine,
    model_id,
    reviews,
    service_settings,
)
from tests.bench.report import publish
from tests.bench.simulated import simulator

SECTION = "token-cost"
PER = 1000  # events


@dataclass
class Wire:
    """The prompt of every answered request, split as it left the client."""

    requests: int = 0
    instruction: float = 0.0  # the system message: instructions, rules, examples
    content: float = 0.0  # the events' own text

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code != 200 or not response.url.path.endswith("/chat/completions"):
            return
        body = json.loads(response.request.content)
        self.requests += 1
        for message in body["messages"]:
            text = message.get("content") or ""
            if message["role"] == "system":
                self.instruction += estimate_tokens(text)
            elif message["role"] == "user":
                events = parse_events(text)
                chars = sum(len(t) for _, t in events) if events else len(text)
                self.content += chars / CHARS_PER_TOKEN

    def http_client(self) -> httpx2.AsyncClient:
        return openai.DefaultAsyncHttpxClient(event_hooks={"response": [self.on_response]})


@dataclass
class Row:
    workload: str
    client: str
    events: int
    wire: Wire
    stats: dict[str, Any]
    metered_usd: float | None = None
    notes: list[str] = field(default_factory=list)

    def per(self, tokens: float) -> float:
        return tokens * PER / self.events

    @property
    def prompt(self) -> float:
        return float(self.stats["prompt_tokens"])

    @property
    def framing(self) -> float:
        """Event tags, message and reply markers: the rest of the prompt."""
        return self.prompt - self.wire.instruction - self.wire.content

    def usd(self, prices: Prices) -> float:
        s = self.stats
        return cost_usd(
            prices,
            prompt=s["prompt_tokens"],
            cached=s["cached_tokens"],
            completion=s["completion_tokens"],
        )


async def plain_loop(url: str, task: Task, texts: list[str], wire: Wire) -> float | None:
    """One request per event, one after the other."""
    async with openai.AsyncOpenAI(
        base_url=url, api_key="sim", http_client=wire.http_client()
    ) as client:
        for text in texts:
            await ask_plain(client, task, text)
    return None


async def sluicegate(url: str, task: Task, texts: list[str], wire: Wire) -> float | None:
    """Every event asked at once (a backlog), with the default settings; returns what
    sluicegate's own cost meter counted, in dollars."""
    service = ModelService(service_settings(url), http_client=wire.http_client())
    try:
        await asyncio.gather(*(service.ask(task, text, route="bench") for text in texts))
    finally:
        await service.aclose()
    return service.meter.totals()["usd"]


Client = Callable[[str, Task, list[str], Wire], Awaitable[float | None]]
CLIENTS: list[tuple[str, Client]] = [
    ("plain SDK, one request per event", plain_loop),
    ("sluicegate ModelService", sluicegate),
]


def with_repeats(texts: list[str], share: float, seed: int) -> list[str]:
    """``texts`` plus copies of some of them, so that ``share`` of all events repeat an
    earlier event's text exactly; shuffled."""
    rng = random.Random(seed)
    extra = round(len(texts) * share / (1 - share))
    events = texts + rng.choices(texts, k=extra)
    rng.shuffle(events)
    return events


async def measure(workloads: list[tuple[str, list[str]]]) -> list[Row]:
    rows = []
    async with simulator(SimulatorSettings(rpm=0, tpm=0, latency_median_ms=0, seed=3)) as sim:
        for workload, texts in workloads:
            for name, client in CLIENTS:
                await sim.reset()  # an empty prefix cache: each run starts cold
                wire = Wire()
                metered = await client(sim.url, TASK, texts, wire)
                row = Row(workload, name, len(texts), wire, await sim.stats(), metered)
                rows.append(row)
                print(f"{workload:<40} {name:<34} {wire.requests:>5} requests", flush=True)
    return rows


def table(rows: list[Row], prices: Prices) -> str:
    lines = [
        "| events | client | requests | instruction tokens | event content tokens | "
        "framing tokens | output tokens | cached input tokens | $ | $ for all the events | "
        "instruction tokens vs the plain SDK | $ vs the plain SDK |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base: Row | None = None
    for r in rows:
        if base is None or base.workload != r.workload:
            base = r
        usd = r.usd(prices)
        instruction = r.wire.instruction / r.events / (base.wire.instruction / base.events)
        lines.append(
            f"| {r.workload} ({r.events:,}) | {r.client} | {r.per(r.wire.requests):,.1f} | "
            f"{r.per(r.wire.instruction):,.0f} | {r.per(r.wire.content):,.0f} | "
            f"{r.per(r.framing):,.0f} | {r.per(r.stats['completion_tokens']):,.0f} | "
            f"{r.per(r.stats['cached_tokens']):,.0f} | {r.per(usd):.4f} | {usd:.4f} | "
            f"**{instruction:.3f}** | {usd / r.events / (base.usd(prices) / base.events):.2f} |"
        )
    return "\n".join(lines)


def check_meter(rows: list[Row], prices: Prices) -> str:
    """How sluicegate's own meter compares with the bill from the simulator's counts."""
    parts = []
    for r in rows:
        if r.metered_usd is None:
            continue
        billed = r.usd(prices)
        parts.append(f"{r.workload} ${r.metered_usd:.5f} metered, ${billed:.5f} billed")
    return "; ".join(parts)


def section(
    rows: list[Row],
    prices: Prices,
    share: float,
    *,
    command: str,
    seconds: float,
    load: tuple[float, float],
) -> str:
    d = service_settings("http://unused/v1").model
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    single = estimate_tokens(json.dumps(to_strict_json_schema(TASK.output)))
    batch = estimate_tokens(json.dumps(strict_schema(TASK.output)))
    files = ", ".join(f"`{f}`" for f in FILES)
    return f"""\
## Tokens and dollars per 1,000 events: sentiment, sluicegate vs the plain openai SDK

What the sentiment task costs per 1,000 reviews when every event is its own request,
and through sluicegate's model service, which batches events into one request and
answers repeated content from its response cache. Both send the same static
instructions first (about 1,000 tokens of rules and 16 examples), so the provider's
prefix cache applies to both: the OpenAI simulator emulates it, reporting the prefix it
has seen before (1,024 tokens or more) as `usage.prompt_tokens_details.cached_tokens`.

Requests, tokens and dollars per 1,000 events, except *$ for all the events* (their
number in brackets). Dollars at {model_id()}'s prices (${prices.input:.2f} per million
input tokens, ${prices.cached_input:.2f} cached, ${prices.output:.2f} output): the
simulator's counts, priced by sluicegate's cost meter (`stream/model/cost.py`).

{table(rows, prices)}

- *instruction*: the system message, the static prefix of every request (sluicegate's
  adds the rules for event blocks); *event content*: the reviews' own text; *framing*:
  the rest of the prompt (event tags, message markers); *output*: completion tokens;
  *cached input*: the part of the prompt billed at the cached price. Tokens are the
  simulator's count, about four characters each; every request was read as it left
  the client to split its prompt.
- The schema travels in `response_format` (strict structured output, both clients),
  which the simulator does not count into `prompt_tokens`. A provider that bills it
  would add about {batch} tokens to each of sluicegate's requests and {single} to each
  of the plain SDK's; batching divides that by the batch size too.
- sluicegate: the default settings (batches of up to {d.batch_max_events} events or
  {d.batch_max_tokens:,} tokens of text, fewer when their answers might not fit in the
  request's `max_completion_tokens`; the response cache on), every event asked at
  once, as a backlog gives them (a slow trickle of events fills batches less). Its own
  cost meter agrees with the bill from the simulator's counts: {check_meter(rows, prices)}.
- The reviews are `../shared/datasets/sentiment` ({files}), which hold no repeated
  text. The last workload takes both files and adds copies of some reviews so that
  {share:.0%} of its events repeat an earlier one exactly (shuffled): the response
  cache answers those without a request, the plain SDK pays for each.
- Machine: {machine()}; load average {load[0]:.2f} before the run, {load[1]:.2f} after.
- Measured {when}, {seconds:.0f} s in all, with the command `{command}`.
"""


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="the sentiment samples")
    parser.add_argument(
        "--repeats", type=float, default=0.2, help="share of repeated events in the last line"
    )
    parser.add_argument("--seed", type=int, default=5, help="which events repeat")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in FILE")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    workloads = [(f"`{name}`", reviews(args.data, name)) for name in FILES]
    both = interleaved(args.data)
    repeated = with_repeats(both, args.repeats, args.seed)
    workloads.append((f"both files, with {args.repeats:.0%} repeated events", repeated))
    prices = BudgetSettings().price_table()[model_id()]
    started, load_before = time.monotonic(), os.getloadavg()[0]
    rows = asyncio.run(measure(workloads))
    load = (load_before, os.getloadavg()[0])
    command = shlex.join([os.path.relpath(sys.executable), "-m", __spec__.name, *sys.argv[1:]])
    text = section(
        rows, prices, args.repeats, command=command, seconds=time.monotonic() - started, load=load
    )
    publish(text, args.write, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
