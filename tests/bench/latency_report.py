"""The added-latency benchmark's section of BENCHMARKS.md."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stream.kafka.sink import LINGER_MS
from tests.bench.load import percentile
from tests.bench.report import machine

if TYPE_CHECKING:
    from tests.bench.latency import Phase, Plan


@dataclass(frozen=True)
class Facts:
    """How and where the run was made."""

    kafka_text: str
    load: tuple[float, float]
    command: str
    when: str
    seconds: float


def _pair(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{percentile(values, 0.5):.0f} / {percentile(values, 0.99):.0f}"


def per_request(phase: Phase) -> float:
    return phase.answered / phase.requests if phase.requests else 0.0


def spacing(phase: Phase) -> tuple[float, float] | None:
    """p50 and p99 (ms) of the wait the limit itself imposes, when the stream brings more
    events than requests the limit allows: requests then go every 60/R s, and an event
    arriving evenly in between waits for the next one (uniformly up to 60/R s). None at
    one event per request, where nothing waits for the budget."""
    if phase.rate <= phase.rpm / 60:
        return None
    every_ms = 60_000 / phase.rpm
    return 0.5 * every_ms, 0.99 * every_ms


def table(plan: Plan, phases: list[Phase]) -> str:
    lines = [
        "| phase | events/s in | of the ceiling (events/s) | events/s out, 2nd half | lag at "
        "the end (events) | events/request | model call, mean (ms) | latency p50 / p99 (ms) "
        "| **added p50 / p99 (ms)** | the limit's spacing p50 / p99 (ms) | **added beyond "
        "the spacing p50 / p99 (ms)** | every event answered |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        latency = [float(v) for v in p.latencies]
        added = [v - plan.latency_ms for v in latency]
        answered = "yes" if p.kept_up else f"**no**: {p.missing:,} of {p.sent:,} behind"
        floor = spacing(p)
        if floor is None or not added:
            spaced = beyond = "-"
        else:
            spaced = f"{floor[0]:.0f} / {floor[1]:.0f}"
            beyond = (f"{percentile(added, 0.5) - floor[0]:.0f} / "
                      f"{percentile(added, 0.99) - floor[1]:.0f}")  # fmt: skip
        lines.append(
            f"| {p.name} | {p.rate:g} | {p.of_ceiling} | {p.out_rate:.1f} | "
            f"{p.lag[-1] if p.lag else 0:,} | {per_request(p):.1f} | {p.call_s * 1000:.0f} | "
            f"{_pair(latency)} | **{_pair(added)}** | {spaced} | **{beyond}** | {answered} |"
        )
    return "\n".join(lines)


def behind_note(plan: Plan, phases: list[Phase]) -> str:
    behind = [p for p in phases if not p.kept_up]
    if not behind:
        return ""
    p = behind[0]
    return f"""
- **Fell behind below the ceiling.** At {p.rpm:,} requests a minute and {p.rate:g}
  events/s, half of what the limit allows with full batches, the processor did not keep
  up: its requests carried {per_request(p):.1f} events on average (up to {plan.batch}
  allowed), the lag grew from {p.lag[0]:,} to {p.lag[-1]:,} events in {plan.seconds:g} s,
  and {p.missing:,} of the {p.sent:,} events had no output 15 s after the last one came
  in (their latencies are missing from the row, which looks better than it is). The
  first minute hides such a shortfall: the processor's budget starts with a full
  minute's allowance."""


def section(plan: Plan, phases: list[Phase], facts: Facts) -> str:
    calls = [p.call_s * 1000 for p in phases if p.call_s]
    call_ms = min(calls) if calls else 0.0
    limits = " and ".join(f"{rpm:,}" for rpm in plan.rpms)
    return f"""\
## Added latency at half of capacity: what the processor adds to the model's time

The time from an event being readable in Kafka to its enriched output being readable,
minus the model's own answer time, with the processor (`sluicegate run`, a process of
its own) at half of the capacity the model's limit allows. The model is the OpenAI
simulator in its own process; it answers every request in exactly
{plan.latency_ms:g} ms (lognormal sigma 0, no time per output token) and allows
{limits} requests a minute (the processor's `model.rpm` the same; tokens far above
what that lets through). The route is `sentiment` with the local tier and the response
cache off, so that every event is a model call, and `unordered`, so that no event waits
for an earlier one of its key. Each phase runs {plan.seconds:g} s at a steady rate on
fresh topics, with a fresh processor and a full budget at the simulator and in the
processor.

{table(plan, phases)}

- *Capacity*: R requests a minute is R/60 requests a second; a request carries up to
  {plan.batch} events (`model.batch_max_events`; for sentiment the client starts at 12,
  its estimate of what fits in `max_completion_tokens`, and reaches {plan.batch} once
  answers have shown their real size), so the ceiling is R/60 x {plan.batch} events/s
  with full batches, and R/60 at one event per request.
- *Latency*: the output's broker append time minus its input's (both topics use
  `LogAppendTime`; the input is found through the output's `sluicegate.source.*`
  headers), for the inputs after the first 10 s. *Added* is that minus the model's
  {plan.latency_ms:g} ms, which is known because the simulator waits exactly that long
  before every answer. The processor's own histogram of its model calls
  (`sluicegate_model_seconds` on `/metrics`) puts a call at {call_ms:.0f} ms on average:
  about {call_ms - plan.latency_ms:.0f} ms of what is added is the HTTP round trip and the
  simulator's own work (parsing, the answer, the JSON), where a real provider's network
  would put its own.
- Where the rest goes: the consumer thread hands a record to the loop as soon as it is
  there (a poll for the first, then what is already fetched behind it); then the
  micro-batch window (`model.batch_wait_ms`, 5 ms, closed after `model.batch_idle_ms`,
  1 ms, without a new ask), and longer where the limit allows fewer requests than the
  stream would make (a batch stays open until the budget allows its request: at R
  requests a minute, up to 60/R s); the producer's `linger.ms` ({LINGER_MS} ms) and its
  acknowledgement (`acks=all`). At half of the ceiling *with full batches* the limit
  itself sets a floor (*the limit's spacing*): the stream brings 8 events per request
  the limit allows, so once the first minute's allowance is spent (within the first
  10 s, which are left out) a request can go only every 60/R s, and events arriving
  evenly wait for the next one, half of that at the median and 0.99 of it at the 99th
  percentile (at 600 requests a minute: 50 and 99 ms), whatever the processor does;
  *added beyond the spacing* is what is left of the added percentiles once those are
  taken off. At one event per request nothing waits for the budget.{behind_note(plan, phases)}
- Machine: {machine(facts.kafka_text)}, openai {importlib.metadata.version("openai")}; the
  simulator, the broker, the producer and the reader on the same machine; load average
  {facts.load[0]:.2f} before the run, {facts.load[1]:.2f} after.
- Measured {facts.when}, {facts.seconds:.0f} s in all, with the command
  `{facts.command}` (`make load`).
"""
