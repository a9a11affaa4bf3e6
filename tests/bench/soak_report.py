"""The soak's picture (memory, lag, latency and rates over time) and its section."""

from __future__ import annotations

import importlib.metadata
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from stream.config import ModelSettings
from tests.bench.load import percentile
from tests.bench.report import machine

if TYPE_CHECKING:
    from tests.bench.soak import Soak

SPAN_S = 60.0  # "first minute" and "last minute"


def rates(soak: Soak) -> tuple[list[float], list[float], list[float]]:
    """Minutes, events/s in and out between one sample and the one before."""
    minutes, inward, outward = [], [], []
    last_t, last_in, last_out = 0.0, 0, 0
    for s in soak.samples:
        dt = s.t_s - last_t
        minutes.append(s.t_s / 60)
        inward.append((s.inputs - last_in) / dt)
        outward.append((s.outputs - last_out) / dt)
        last_t, last_in, last_out = s.t_s, s.inputs, s.outputs
    return minutes, inward, outward


def figure(soak: Soak, path: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - only the soak needs it (extra "bench")

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plan, samples = soak.plan, soak.samples
    t = [s.t_s / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True, constrained_layout=True)
    fig.suptitle(
        f"sluicegate soak: {plan.rate:g} events/s for {plan.minutes:g} min against the simulator"
    )
    rss, lag, latency, rate = axes
    rss.plot(t, [s.rss_mib for s in samples], color="tab:blue", label="RSS")
    rss.set_ylabel("processor RSS (MiB)")
    rss.set_ylim(bottom=0)
    cache = rss.twinx()
    cache.plot(t, [min(s.model_answers, plan.cache_entries) for s in samples], color="tab:cyan",
               lw=0.8, ls="--", label="response-cache entries")  # fmt: skip
    cache.set_ylabel("cache entries")
    cache.set_ylim(bottom=0, top=max(1, plan.cache_entries) * 1.1)
    rss.legend(handles=rss.lines + cache.lines, loc="lower right")
    lag.plot(t, [s.lag for s in samples], color="tab:red", label="consumer-group lag")
    lag.plot(t, [s.in_flight for s in samples], color="tab:gray", lw=0.8, label="in flight")
    lag.set_ylabel("events")
    lag.set_ylim(bottom=0)
    lag.legend(loc="upper right")
    latency.plot(t, [s.p50_ms for s in samples], color="tab:green", label="p50")
    latency.plot(t, [s.p99_ms for s in samples], color="tab:orange", label="p99")
    latency.set_ylabel(f"latency (ms) per {plan.every_s:g} s")
    latency.set_ylim(bottom=0)
    latency.legend(loc="upper right")
    minutes, inward, outward = rates(soak)
    rate.plot(minutes, inward, color="tab:purple", lw=0.8, label="in")
    rate.plot(minutes, outward, color="tab:brown", lw=0.8, label="out")
    rate.set_ylabel("events/s")
    rate.set_ylim(bottom=0)
    rate.set_xlabel("minutes since the producer started")
    rate.legend(loc="upper right")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def first_and_last(points: list[tuple[float, float]], end_s: float) -> tuple[float, float]:
    """Medians of the values whose time falls in the first and in the last minute."""
    first = [v for t, v in points if t <= SPAN_S and not math.isnan(v)]
    last = [v for t, v in points if t >= end_s - SPAN_S and not math.isnan(v)]
    return (
        statistics.median(first) if first else math.nan,
        statistics.median(last) if last else math.nan,
    )


def _ratio(first: float, last: float) -> str:
    if math.isnan(first) or math.isnan(last) or first == 0:
        return "-"
    return f"**{last / first:.2f}**"


def table(soak: Soak) -> str:
    end_s = soak.samples[-1].t_s
    arrivals = [((a.at_ms - soak.started_ms) / 1000, float(a.latency_ms)) for a in soak.arrivals]
    first_lat = [v for t, v in arrivals if t <= SPAN_S]
    last_lat = [v for t, v in arrivals if t >= end_s - SPAN_S]
    minutes, _, outward = rates(soak)
    rows = [
        ("processor RSS (MiB), median of the samples",
         first_and_last([(s.t_s, s.rss_mib) for s in soak.samples], end_s), "{:.1f}"),
        ("consumer-group lag (events), median of the samples",
         first_and_last([(s.t_s, float(s.lag)) for s in soak.samples], end_s), "{:.0f}"),
        ("latency p50 (ms), all outputs of the minute",
         (percentile(first_lat, 0.5), percentile(last_lat, 0.5)), "{:.0f}"),
        ("latency p99 (ms), all outputs of the minute",
         (percentile(first_lat, 0.99), percentile(last_lat, 0.99)), "{:.0f}"),
        ("events/s out, median of the samples",
         first_and_last([(m * 60, r) for m, r in zip(minutes, outward, strict=True)], end_s),
         "{:.1f}"),
    ]  # fmt: skip
    lines = [
        "| measure | first minute | last minute | last / first |",
        "|---|---:|---:|---:|",
    ]
    for name, (first, last), fmt in rows:
        lines.append(
            f"| {name} | {fmt.format(first)} | {fmt.format(last)} | {_ratio(first, last)} |"
        )
    return "\n".join(lines)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 for fewer than two)."""
    if len(points) < 2:
        return 0.0
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def memory_note(soak: Soak) -> str:
    """How RSS followed the cache's fill, and its slope once the cache was full."""
    samples, size = soak.samples, soak.plan.cache_entries
    first = samples[0]
    full = next((s for s in samples if s.model_answers >= size), None)
    if full is None:
        last = samples[-1]
        per_entry = (last.rss_mib - first.rss_mib) * 1024 / max(1, last.model_answers)
        return (
            f"the cache was not full by the end ({last.model_answers:,} of {size:,} "
            f"entries); RSS grew about {per_entry:.1f} KiB per entry it took, "
            f"{slope([(s.t_s / 60, s.rss_mib) for s in samples]):.2f} MiB a minute."
        )
    per_entry = (full.rss_mib - first.rss_mib) * 1024 / max(1, full.model_answers)
    after = [(s.t_s / 60, s.rss_mib) for s in samples if s.t_s >= full.t_s]
    return (
        f"the cache took its {size:,} entries in the first {full.t_s / 60:.1f} minutes, "
        f"while RSS grew about {per_entry:.1f} KiB per entry; from then on RSS moved "
        f"{slope(after):+.2f} MiB a minute (least squares over the {len(after)} samples "
        f"after the fill), from {after[0][1]:.1f} to {after[-1][1]:.1f} MiB."
    )


def cache_note(soak: Soak) -> str:
    plan, default = soak.plan, ModelSettings().cache_entries
    if plan.cache_entries == default:
        return " (the default)"
    last = soak.samples[-1]
    per_minute = last.model_answers / (last.t_s / 60) if last.t_s else 0.0
    fill = f"; at this rate the default would fill after {default / per_minute:.0f} minutes"
    return (
        f" (the default is {default:,}: a smaller one fills within the run, so that the "
        f"plot shows memory once the cache is full{fill if per_minute else ''})"
    )


def section(soak: Soak, plot: str, command: str, when: str, seconds: float) -> str:
    plan = soak.plan
    tiers = soak.tiers()
    total = sum(tiers.values()) or 1
    shares = ", ".join(f"{tier} {n / total:.0%}" for tier, n in tiers.most_common())
    rss = [s.rss_mib for s in soak.samples]
    sim = soak.sim
    by_status = sim.get("by_status", {})
    rejected = by_status.get("429", 0) if isinstance(by_status, dict) else 0
    data = (
        f"the reviews of `{plan.data}`"
        if plan.data
        else "reviews generated from `stream/samples` (each with its own details, about 5% "
        "repeating a sample word for word)"
    )
    return f"""\
## Soak: memory, lag and latency over {plan.minutes:g} minutes at a steady rate

`sluicegate run` as a process of its own, fed {plan.rate:g} events/s for {plan.minutes:g}
minutes: {plan.review_share:.0%} product reviews to the `sentiment` handler, the rest log
lines to the `logs` handler, on 3-partition topics. The model is the OpenAI simulator in
its own process: answers in {plan.latency_ms:g} ms (median, lognormal sigma
{plan.latency_sigma:g}), {plan.rpm:,} requests and {plan.tpm:,} tokens a minute, the same
limits configured in the processor. Every {plan.every_s:g} s the benchmark read the
processor's resident memory (`VmRSS` of its pid), its consumer group's lag (high
watermarks minus committed offsets, from an admin client) and the latency of each output
read since the last look: the broker's append time of the output minus that of its
input (both topics use `LogAppendTime`; the input is found through the output's
`sluicegate.source.*` headers). *Flat* means the last minute looks like the first.

{table(soak)}

![processor RSS, consumer-group lag, latency and rates over the soak]({plot})

- Totals: {soak.sent:,} events in, every one with its output ({soak.duplicates}
  duplicates, {soak.dead_lettered:.0f} dead-lettered); answered by
  {shares}; {sim.get("requests", 0):,} model requests, {rejected} answered 429. After the
  producer stopped, the last output came {soak.drain_s:.1f} s later and the processor
  exited with code {soak.exit_code} on SIGTERM. RSS ranged from {min(rss):.1f} to
  {max(rss):.1f} MiB.
- Memory and the response cache: {memory_note(soak)}
- Settings: the defaults (at-least-once, `max_in_flight` 10000, micro-batches of up
  to 16 events), `model.rpm` {plan.rpm}, `model.tpm` {plan.tpm:,} and a response cache
  of {plan.cache_entries:,} entries{cache_note(soak)}. The events: {data} and the
  sample log lines with fresh values; the producer fell behind its
  schedule by at most {soak.most_behind_s * 1000:.0f} ms. The dashed line is the
  response cache's fill, inferred (every answer of the model is stored, up to its size).
- Machine: {machine(soak.kafka_text)}, openai {importlib.metadata.version("openai")}; the
  simulator, the broker, the producer and the reader on the same machine; load average
  {soak.load[0]:.2f} before the run, {soak.load[1]:.2f} after.
- Measured {when}, {seconds / 60:.0f} min in all, with the command `{command}`
  (`make soak`; not part of `make bench`).
"""
