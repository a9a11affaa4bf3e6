"""Faults of the model: an outage, a ten-fold slowdown, storms of 429s, faulty answers.

The processor runs in this process, wired as ``sluicegate run`` wires it (one model
service, consumption paused while its breaker is open), on the ``sentiment`` route with
the local tier off, so that every event needs the model. The simulator's behaviour is
changed while events flow (``POST /sim/config``). Every review text is unique, so the
response cache answers none of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson

from schemas.dlq import DlqEnvelope
from stream.config import Settings
from stream.model.buckets import RateBudget
from stream.model.service import ModelService
from stream.runtime.processor import Processor
from tests.faults.lab import Feeder, Lab, Tally, account, produce, read_topic, rss_mib, topics
from tests.simutil import sim_config, sim_stats

# The simulator between faults: a fast, healthy endpoint with roomy limits.
HEALTHY: dict[str, Any] = {
    "latency_median_ms": 40.0,
    "latency_sigma": 0.3,
    "rpm": 5000,
    "tpm": 2_000_000,
    "error_500": 0.0,
    "error_503": 0.0,
    "hang": 0.0,
    "invalid_json": 0.0,
    "truncated": 0.0,
    "wrong_enum": 0.0,
    "refusal": 0.0,
}
PARTITIONS = 3
_PRODUCTS = ("kettle", "desk lamp", "backpack", "blender", "monitor arm", "rain jacket")


def review(i: int) -> tuple[bytes | None, bytes | None]:
    """Event ``i``: a review with a text no other event has."""
    text = f"Order {i}: the {_PRODUCTS[i % 6]} came in week {i // 7}, box {i % 13} was dented."
    return b"k%d" % (i % 500), orjson.dumps({"id": i, "text": text})


def settings_for(lab: Lab, src: str, out: str, dlq: str, **processing: Any) -> Settings:
    """The product's defaults, but for the topics, the simulator and quicker commits."""
    return Settings(
        kafka=lab.kafka(),
        routes=[{"name": "reviews", "input_topics": [src], "output_topic": out,
                 "handler": "sentiment", "ordering": "key",
                 "options": {"local_tier": False}}],
        processing={"commit_interval_ms": 500, "shutdown_timeout_s": 15, **processing},
        dlq={"topic": dlq},
        model={"base_url": lab.simulator, "api_key": "sim"},
        metrics={"enabled": False},
    )  # fmt: skip


@dataclass
class Sample:
    at: float
    consumed: int
    done: int  # events whose outputs are acknowledged
    in_flight: int  # events held by the processor
    paused: int  # paused partitions
    rss_mib: float
    limit: float  # the adaptive concurrency limit
    requests: int  # model requests in flight


@dataclass
class InProcess:
    """A processor and its model service running on this loop, sampled every 50 ms."""

    settings: Settings
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.service = ModelService(self.settings)
        self.processor = Processor(
            self.settings, model=self.service, pause_while=[self.service.should_pause]
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcess:
        self._task = asyncio.create_task(self.processor.run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.processor.stop()
        try:
            if self._task is not None:
                await self._task
        finally:
            await self.service.aclose()

    @property
    def in_flight(self) -> int:
        return sum(p.load for p in self.processor.partitions.values())

    def sample(self) -> Sample:
        concurrency = self.service.client.concurrency
        stats = self.processor.stats
        s = Sample(
            at=time.monotonic(),
            consumed=stats.consumed,
            done=stats.produced + stats.dead_lettered,
            in_flight=self.in_flight,
            paused=sum(p.paused for p in self.processor.partitions.values()),
            rss_mib=rss_mib(),
            limit=concurrency.limit,
            requests=concurrency.in_flight,
        )
        self.samples.append(s)
        return s

    async def until(self, done: Callable[[], bool], limit_s: float, what: str) -> float:
        """Sample until ``done()``; return the seconds it took. Fails on timeout or if the
        processor stopped."""
        began = time.monotonic()
        while not done():
            assert self._task is not None
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise AssertionError(f"the processor stopped before {what}")
            assert time.monotonic() - began < limit_s, (
                f"no {what} in {limit_s}s: {self.processor.stats}"
            )
            self.sample()
            await asyncio.sleep(0.05)
        return time.monotonic() - began

    async def run_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        await self.until(lambda: time.monotonic() >= end, seconds + 5, "the end of the wait")

    def handled(self, expected: int) -> Callable[[], bool]:
        stats = self.processor.stats
        return lambda: (
            stats.consumed >= expected
            and self.in_flight == 0
            and stats.produced + stats.dead_lettered >= expected
        )

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= t]


async def model_outage(lab: Lab, outage_s: float = 60.0) -> Tally:
    """The model answers 503 to everything for ``outage_s`` while events keep arriving.

    Facts: when the breaker opened, what was consumed while it was open, the in-flight
    peak, and how long after the model's return the first answer came, consumption
    resumed, and the backlog was worked off.
    """
    tally = Tally(f"model outage: every call 503 for {outage_s:.0f} s")
    began = time.monotonic()
    await sim_config(lab.simulator, **HEALTHY)
    with topics(lab.bootstrap) as make:
        src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
        produce(lab.bootstrap, src, review, 300)
        async with InProcess(settings_for(lab, src, out, dlq)) as run:
            stats, client = run.processor.stats, run.service.client
            with Feeder(lab.bootstrap, src, review, rate=25, start=300) as feed:
                await run.until(lambda: stats.produced >= 200, 60, "progress")
                await sim_config(lab.simulator, error_503=1.0)
                down = time.monotonic()
                opened_s = await run.until(lambda: client.breaker.opened > 0, 60, "open breaker")
                dead_at_open = stats.dead_lettered
                await run.run_for(2.0)  # the calls under way end, the partitions pause
                paused_from, consumed_from = time.monotonic(), stats.consumed
                await run.run_for(max(0.0, down + outage_s - time.monotonic()))
                during = run.since(paused_from)
                consumed_during = stats.consumed - consumed_from
                arrived_during = feed.sent
                await sim_config(lab.simulator, error_503=0.0)
                up, ok, resumes = time.monotonic(), client.requests["ok"], stats.resumes
                answer_s = await run.until(lambda: client.requests["ok"] > ok, 120, "an answer")
                resume_s = answer_s + await run.until(lambda: stats.resumes > resumes, 120,
                                                      "resumed consumption")  # fmt: skip
                total = feed.stop()
            caught_up_s = time.monotonic() - up + await run.until(run.handled(total), 180, "all")
        sim = await sim_stats(lab.simulator)
        account(tally, lab.bootstrap, src, out, dlq, isolation="read_uncommitted")
    tally.facts = {
        "breaker_opened": client.breaker.opened,
        "breaker_open_after_s": round(opened_s, 1),
        "dead_lettered_during_outage": stats.dead_lettered - dead_at_open,
        "arrived_by_model_return": arrived_during,
        "consumed_while_open": consumed_during,
        "paused_share_while_open": round(
            sum(s.paused == PARTITIONS for s in during) / max(1, len(during)), 2
        ),
        "peak_in_flight_while_open": max(s.in_flight for s in during),
        "answers_503": sim["by_status"].get("503", 0),
        "first_answer_after_return_s": round(answer_s, 1),
        "resumed_after_return_s": round(resume_s, 1),
        "caught_up_after_return_s": round(caught_up_s, 1),
        "pauses": stats.pauses,
        "resumes": stats.resumes,
    }
    tally.notes = (
        f"breaker opened {opened_s:.1f} s into the outage after "
        f"{tally.facts['answers_503']} answers 503 in all (probes included); consumption "
        f"paused: {consumed_during} events consumed in the {outage_s - opened_s - 2:.0f} s "
        f"the breaker was open, {arrived_during} had arrived; none dead-lettered; first "
        f"answer {answer_s:.1f} s and consumption resumed {resume_s:.1f} s after the "
        f"model's return, backlog done after {caught_up_s:.0f} s"
    )
    tally.seconds = time.monotonic() - began
    return tally


async def model_slowdown(
    lab: Lab, base_ms: float = 300.0, factor: float = 10.0, slow_s: float = 20.0
) -> Tally:
    """The model's median answer time grows from ``base_ms`` (a usual time for nano)
    ``factor``-fold for ``slow_s``, under a backlog.

    Facts, per phase (before, slowed, after): events/s, the adaptive concurrency limit,
    the peak of events held in memory and of the process's resident memory.
    """
    tally = Tally(
        f"model slowed {factor:.0f}-fold ({base_ms / 1000:g} s -> {base_ms * factor / 1000:g} s "
        f"median) for {slow_s:.0f} s"
    )
    began = time.monotonic()
    bound, per_partition, poll = 1500, 600, 200
    backlog = 8000
    await sim_config(lab.simulator, **HEALTHY | {"latency_median_ms": base_ms})
    with topics(lab.bootstrap) as make:
        src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
        produce(lab.bootstrap, src, review, backlog)
        settings = settings_for(
            lab, src, out, dlq, max_in_flight=bound,
            max_in_flight_per_partition=per_partition, max_poll_records=poll,
        )  # fmt: skip
        async with InProcess(settings) as run:
            stats = run.processor.stats
            with Feeder(lab.bootstrap, src, review, rate=100, start=backlog) as feed:
                await run.until(lambda: stats.produced >= 500, 60, "progress")
                t_before = time.monotonic()
                await run.run_for(6.0)
                await sim_config(lab.simulator, latency_median_ms=base_ms * factor)
                t_slow = time.monotonic()
                await run.run_for(slow_s)
                await sim_config(lab.simulator, latency_median_ms=base_ms)
                t_after = time.monotonic()
                total = feed.stop()
            await run.until(run.handled(total), 180, "all handled")
        account(tally, lab.bootstrap, src, out, dlq, isolation="read_uncommitted")
    phases = {
        "before": [s for s in run.samples if t_before <= s.at < t_slow],
        "slowed": [s for s in run.samples if t_slow <= s.at < t_after],
        "after": [s for s in run.samples if s.at >= t_after],
    }
    facts: dict[str, Any] = {"max_in_flight": bound, "max_poll_records": poll}
    for name, samples in phases.items():
        span = samples[-1].at - samples[0].at
        facts[name] = {
            "events_per_s": round((samples[-1].done - samples[0].done) / span, 1),
            "limit_min": round(min(s.limit for s in samples), 1),
            "limit_max": round(max(s.limit for s in samples), 1),
            "peak_in_flight": max(s.in_flight for s in samples),
            "peak_model_requests": max(s.requests for s in samples),
            "paused_share": round(sum(s.paused > 0 for s in samples) / len(samples), 2),
            "peak_rss_mib": round(max(s.rss_mib for s in samples), 1),
        }
    facts["rss_growth_slowed_mib"] = round(
        facts["slowed"]["peak_rss_mib"] - facts["before"]["peak_rss_mib"], 1
    )
    slowed = phases["slowed"]
    half = slowed[len(slowed) // 2].at
    facts["rss_growth_second_half_mib"] = round(
        max(s.rss_mib for s in slowed if s.at >= half)
        - max(s.rss_mib for s in slowed if s.at < half),
        1,
    )
    tally.facts = facts
    b, s = facts["before"], facts["slowed"]
    tally.notes = (
        f"{b['events_per_s']:.0f} -> {s['events_per_s']:.0f} events/s; concurrency limit "
        f"{b['limit_min']:.0f}-{b['limit_max']:.0f} -> {s['limit_min']:.0f}-{s['limit_max']:.0f}; "
        f"in flight at most {max(b['peak_in_flight'], s['peak_in_flight'])} (bound {bound}), "
        f"partitions paused {s['paused_share']:.0%} of the slow phase; peak RSS "
        f"{b['peak_rss_mib']:.0f} -> {s['peak_rss_mib']:.0f} MiB"
    )
    tally.seconds = time.monotonic() - began
    return tally


STORMS: tuple[tuple[str, dict[str, int]], ...] = (
    ("requests", {"rpm": 6}),
    ("tokens", {"tpm": 8_000}),
    ("both", {"rpm": 6, "tpm": 8_000}),
)


def _back_up(budget: RateBudget) -> bool:
    """Both buckets at more than half of the configured limits again."""
    return all(b.per_minute > b.configured * b.share / 2 for b in (budget.requests, budget.tokens))


async def rate_limit_storms(lab: Lab, storm_s: float = 8.0, calm_s: float = 4.0) -> Tally:
    """Three storms of 429s: the server's request limit, then its token limit, then both,
    drop far below what the client believes it may send, for ``storm_s`` each.

    Facts: 429s the server sent and the client saw, retries, the breaker, the limits the
    client used in each storm and how soon it raised them again, and how long the
    backlog took once the last storm ended.
    """
    tally = Tally(f"429 storms: 3 x {storm_s:.0f} s of a server limit far below the client's")
    began = time.monotonic()
    await sim_config(lab.simulator, **HEALTHY)
    with topics(lab.bootstrap) as make:
        src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
        produce(lab.bootstrap, src, review, 200)
        async with InProcess(settings_for(lab, src, out, dlq)) as run:
            stats, client = run.processor.stats, run.service.client
            with Feeder(lab.bootstrap, src, review, rate=60, start=200) as feed:
                await run.until(lambda: stats.produced >= 150, 60, "progress")
                budget = client.budget
                followed: dict[str, dict[str, float]] = {}
                for name, limits in STORMS:
                    await sim_config(lab.simulator, **limits)
                    await run.run_for(storm_s)
                    storm = (budget.requests.per_minute, budget.tokens.per_minute)
                    await sim_config(lab.simulator, rpm=HEALTHY["rpm"], tpm=HEALTHY["tpm"])
                    # The next answer's headers state the lifted limit; a client throttled
                    # to the storm's limit sees one within a request's refill time.
                    raised_s = await run.until(lambda: _back_up(budget), 60, "limits raised")
                    await run.run_for(calm_s)
                    followed[name] = {"storm_rpm": storm[0], "storm_tpm": storm[1],
                                      "raised_after_s": round(raised_s, 1)}  # fmt: skip
                total = feed.stop()
            drain_s = await run.until(run.handled(total), 180, "all handled")
        sim = await sim_stats(lab.simulator)
        account(tally, lab.bootstrap, src, out, dlq, isolation="read_uncommitted")
    tally.facts = {
        "answers_429": sim["by_status"].get("429", 0),
        "client_saw_429": client.rate_limited,
        "requests_ok": client.requests["ok"],
        "event_retries": stats.retries,
        "breaker_opened": client.breaker.opened,
        "pauses": stats.pauses,
        "drained_after_last_storm_s": round(drain_s, 1),
        "client_limits": followed,
    }
    tally.notes = (
        f"{tally.facts['answers_429']} answers 429 (requests, tokens, both); "
        f"{stats.retries} event retries; breaker opened {client.breaker.opened} times; "
        f"none dead-lettered; limits raised again "
        f"{', '.join(str(f['raised_after_s']) for f in followed.values())} s after each storm; "
        f"backlog done {drain_s:.0f} s after the last storm"
    )
    tally.seconds = time.monotonic() - began
    return tally


ANSWER_FAULTS = {"error_500": 0.05, "error_503": 0.05, "invalid_json": 0.08, "truncated": 0.04,
                 "wrong_enum": 0.08, "refusal": 0.04}  # fmt: skip


async def model_answer_faults(lab: Lab, events: int = 600) -> Tally:
    """The model answers with 500s and 503s, broken JSON, cut-off answers, labels outside
    the enum and refusals, each in a few percent of requests.

    What must happen: 5xx are retried; an invalid answer gets one repair attempt and then
    sends only the events it failed to the DLQ, as ``ModelOutputInvalid`` or
    ``ModelRefused``; no event is lost.
    """
    tally = Tally("model answers faulty: 5xx, broken JSON, truncation, wrong enum, refusal")
    began = time.monotonic()
    await sim_config(lab.simulator, **HEALTHY | ANSWER_FAULTS)
    with topics(lab.bootstrap) as make:
        src, out, dlq = make("in", PARTITIONS), make("out", PARTITIONS), make("dlq")
        produce(lab.bootstrap, src, review, events)
        async with InProcess(settings_for(lab, src, out, dlq)) as run:
            await run.until(run.handled(events), 180, "all handled")
        sim = await sim_stats(lab.simulator)
        account(tally, lab.bootstrap, src, out, dlq, isolation="read_uncommitted")
        reasons = Counter(
            DlqEnvelope.from_json(r.value or b"").error_class
            for r in read_topic(lab.bootstrap, dlq)
        )
    tally.facts = {"fault_rates": ANSWER_FAULTS, "faults_injected": sim["faults"],
                   "requests": sim["requests"], "dead_lettered_as": dict(reasons)}  # fmt: skip
    injected = sum(sim["faults"].values())
    tally.notes = (
        f"{injected} faults injected in {sim['requests']} requests; 5xx retried; "
        + ", ".join(f"{n} {k}" for k, n in reasons.most_common())
        + " dead-lettered after the repair attempt (the other events of their batches "
        "enriched)"
    )
    tally.seconds = time.monotonic() - began
    return tally
