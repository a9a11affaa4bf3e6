"""The model behind the runtime: real broker, real SDK over HTTP, the simulator.

Every fault the simulator injects ends as a retried success or a dead-lettered event
with the model's reason; no invalid enrichment is ever published; 429s slow the client
down instead of failing events; an outage opens the breaker and pauses consumption
without dead-lettering anything, and processing resumes when the model is back.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from handlers.base import Handler, HandlerContext, HandlerOptions, Result
from handlers.model import Task
from schemas.dlq import DlqEnvelope
from schemas.records import SourceRecord
from stream.config import BudgetSettings, KafkaSettings, MetricsSettings, Settings
from stream.model.service import ModelService
from stream.runtime.processor import Processor
from stream.telemetry import metrics
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce
from tests.simutil import sim_config, sim_stats
from tests.stream.harness import all_handled, run_until, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]

TEXTS = ["I love it, fantastic quality", "Terrible, broke after a day", "It is a chair",
         "Best purchase ever!", "Awful support, never again", "Arrived on Tuesday"]  # fmt: skip


class Sentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    confidence: float


class ClassifyOptions(HandlerOptions):
    batching: bool = True


class Classify(Handler):
    """A minimal model-backed handler: the review's sentiment, through ModelPort."""

    name = "classify"
    uses_model = True
    Options = ClassifyOptions
    options: ClassifyOptions
    task = Task("classify", "Classify the sentiment of each review.", Sentiment)

    async def handle(self, record: SourceRecord) -> Result:
        event = orjson.loads(record.value or b"{}")
        model = self.context.require_model(self.name)
        reply = await model.ask(self.task, event["text"], route=self.context.route,
                                batch=self.options.batching)  # fmt: skip
        event["sentiment"] = reply.output.model_dump()
        return Result(orjson.dumps(event))


def setup(
    kafka: KafkaSettings, make_topic: TopicFactory, url: str, n: int, batching: bool = True,
    **model: Any,
) -> tuple[Settings, str, str, str]:  # fmt: skip
    src, out, dlq = make_topic("in", 2), make_topic("out", 2), make_topic("dlq")
    produce(kafka.bootstrap_servers, src,
            [(b"k%d" % (i % 5), orjson.dumps({"id": i, "text": f"{TEXTS[i % 6]} #{i}"}))
             for i in range(n)])  # fmt: skip
    settings = Settings(
        kafka=kafka,
        routes=[{"name": "reviews", "input_topics": [src], "output_topic": out,
                 "handler": "classify", "ordering": "unordered",
                 "options": {"batching": batching}}],
        processing={"commit_interval_ms": 200, "shutdown_timeout_s": 10},
        dlq={"topic": dlq, "max_consecutive": 1000, "max_ratio": 1.0},
        model={"base_url": url, "api_key": "sim", "batch_wait_ms": 2, **model},
        metrics={"enabled": False},
    )  # fmt: skip
    return settings, src, out, dlq


def processor_for(settings: Settings) -> tuple[Processor, ModelService]:
    service = ModelService(settings)
    route = settings.routes[0]
    handler = Classify(ClassifyOptions.model_validate(route.options),
                       HandlerContext(route.name, service))  # fmt: skip
    processor = Processor(settings, {route.name: handler}, model=service,
                          pause_while=[service.should_pause])  # fmt: skip
    return processor, service


async def test_faults_end_retried_or_dead_lettered(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    """With 500s, 503s, invalid JSON, truncation, wrong enums and refusals injected,
    every event is enriched with a valid answer or dead-lettered for the model's reason;
    each input is accounted for exactly once."""
    await sim_config(simulator, error_500=0.08, error_503=0.08, invalid_json=0.1,
                     truncated=0.05, wrong_enum=0.1, refusal=0.05)  # fmt: skip
    n = 120
    settings, _, out, dlq = setup(kafka, make_topic, simulator, n, batching=False)
    processor, service = processor_for(settings)
    try:
        await run_until(processor, all_handled(n), limit_s=90)
    finally:
        await service.aclose()
    enriched = consume(kafka.bootstrap_servers, out, None, idle_s=2)
    dead = consume(kafka.bootstrap_servers, dlq, None, idle_s=2)
    for r in enriched:
        Sentiment.model_validate(orjson.loads(r.value or b"")["sentiment"])
    reasons = {DlqEnvelope.from_json(r.value or b"").error_class for r in dead}
    assert reasons <= {"ModelOutputInvalid", "ModelRefused"}
    assert all(DlqEnvelope.from_json(r.value or b"").stage == "model" for r in dead)
    sources = [source_of(r) for r in enriched + dead]
    assert len(sources) == len(set(sources)) == n
    assert processor.stats.dead_lettered == len(dead) < n // 4
    stats = await sim_stats(simulator)
    assert stats["requests"] > n, "faults were retried or repaired"


async def test_rate_limits_slow_down_instead_of_failing(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    """A server limit the client does not know about answers 429s; the client waits as
    told and every event is enriched, none dead-lettered."""
    await sim_config(simulator, rpm=60)  # a minute's worth at once, then one a second
    n = 75
    settings, _, out, _ = setup(kafka, make_topic, simulator, n, batching=False, rpm=0)
    processor, service = processor_for(settings)
    try:
        await run_until(processor, all_handled(n), limit_s=90)
    finally:
        await service.aclose()
    assert processor.stats.dead_lettered == 0
    assert service.client.rate_limited > 0
    assert len({source_of(r) for r in consume(kafka.bootstrap_servers, out, None, idle_s=2)}) == n


async def test_outage_opens_breaker_and_pauses_consumption(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    """During a model outage the breaker opens and consumption pauses; nothing is
    dead-lettered; when the model is back every event is enriched."""
    await sim_config(simulator, error_503=1.0)
    n = 60
    settings, _, out, _ = setup(kafka, make_topic, simulator, n, max_attempts=1,
                                breaker_threshold=3, breaker_cooldown_s=0.5)  # fmt: skip
    processor, service = processor_for(settings)
    task = asyncio.create_task(run_until(processor, all_handled(n), limit_s=90))
    while not service.client.breaker.opened:
        assert not task.done()
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)
    assert processor.stats.pauses > 0
    assert processor.stats.dead_lettered == 0
    await sim_config(simulator, error_503=0.0)
    try:
        await task
    finally:
        await service.aclose()
    assert processor.stats.dead_lettered == 0
    assert processor.stats.resumes > 0
    assert len({source_of(r) for r in consume(kafka.bootstrap_servers, out, None, idle_s=2)}) == n


Page = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Page:
    """Every sample of a /metrics page by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    page: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return page[(name, frozenset(labels.items()))]


async def test_metrics_show_the_runtime_and_the_model(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    """/metrics carries every family operators need, with the values of the run: events
    by outcome and route, latency by stage, consumer lag per partition (behind while the
    model works, zero once caught up), the DLQ cap's ratio, in-flight and paused
    partitions, the model's requests, 429s, adaptive limit, budgets and breaker, tokens
    and dollars by handler, the budget left; /healthz and /readyz answer."""
    n, bad = 20, 2
    await sim_config(simulator, latency_median_ms=1500, latency_sigma=0)  # time to look
    settings, src, _, _ = setup(kafka, make_topic, simulator, n)
    produce(kafka.bootstrap_servers, src, [(b"bad", b"not json")] * bad)
    settings = settings.model_copy(update={
        "metrics": MetricsSettings(host="127.0.0.1", port=0),
        "budget": BudgetSettings(usd_per_day=5.0),
    })  # fmt: skip
    processor, service = processor_for(settings)
    handled = all_handled(n + bad)
    busy: Page = {}
    async with metrics.serving(settings.metrics, processor, service) as port:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:

            async def get(path: str, status: int = 200) -> str:
                async with session.get(f"{base}{path}") as resp:
                    assert resp.status == status, await resp.text()
                    return await resp.text()

            await get("/readyz", 503)  # nothing assigned yet
            task = asyncio.create_task(processor.run())
            try:
                while processor.stats.consumed < n + bad or not handled(processor):
                    assert not task.done()
                    if processor.stats.consumed == n + bad and not busy:
                        busy.update(samples(await get("/metrics")))  # the model answering
                    await asyncio.sleep(0.01)
                settled = samples(await get("/metrics"))
                await get("/readyz")
            finally:
                processor.stop()
                await task
                await service.aclose()
            page = samples(await get("/metrics"))
            await get("/healthz")
    lag = "sluicegate_consumer_lag"
    behind = [v for (name, _), v in busy.items() if name == lag]
    assert len(behind) == 2  # one series per partition
    assert sum(behind) > 0  # events in, not finished
    assert [v for (name, _), v in settled.items() if name == lag] == [0.0, 0.0]
    check_counts(page, n, bad)


def check_counts(page: Page, n: int, bad: int) -> None:
    events = "sluicegate_events_total"
    assert value(page, events, outcome="consumed", route="reviews") == n + bad
    assert value(page, events, outcome="dead_lettered", route="reviews") == bad
    assert value(page, events, outcome="produced", route="reviews") == n + bad
    for stage, count in (("handle", n + bad), ("produce", n + bad)):
        assert value(page, "sluicegate_stage_seconds_count", stage=stage) == count
    assert value(page, "sluicegate_stage_seconds_count", stage="model") > 0
    assert value(page, "sluicegate_stage_seconds_sum", stage="handle") >= 1.0  # 1.5 s answers
    assert value(page, "sluicegate_dlq_window_ratio") == pytest.approx(bad / (n + bad))
    assert value(page, "sluicegate_dlq_max_ratio") == 1.0
    assert value(page, "sluicegate_in_flight_events") == 0
    assert value(page, "sluicegate_paused_partitions") == 0
    assert value(page, "sluicegate_model_concurrency_limit") >= 1
    assert value(page, "sluicegate_model_breaker_state") == 0
    assert value(page, "sluicegate_model_requests_total", status="ok") > 0
    assert value(page, "sluicegate_model_requests_total", status="rate_limited") == 0
    assert value(page, "sluicegate_model_rate_limited_total") == 0
    assert ("sluicegate_model_requests_budget", frozenset()) in page
    assert ("sluicegate_model_tokens_budget", frozenset()) in page
    tokens = value(page, "sluicegate_model_tokens_total", handler="classify", route="reviews",
                   kind="prompt")  # fmt: skip
    usd = value(page, "sluicegate_model_cost_usd_total", handler="classify", route="reviews")
    assert tokens > 0
    assert usd > 0
    assert value(page, "sluicegate_budget_remaining_usd") == pytest.approx(5.0 - usd)
    assert value(page, "sluicegate_model_seconds_count") > 0


async def test_readiness_names_an_unreachable_broker() -> None:
    """/readyz also asks the cluster; the answer names the address that did not answer."""
    check = metrics.BrokerCheck(KafkaSettings(bootstrap_servers="127.0.0.1:1"), every_s=60)
    problem = await check.problem()
    assert problem is not None
    assert "127.0.0.1:1" in problem
    assert await check.problem() == problem  # reused, not asked again within every_s


async def test_replicas_share_the_accounts_limits_by_assignment(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    """model.rpm/tpm are the account's: each replica takes the share its partitions
    give it, on every rebalance, with no hand division."""
    settings, _, _, _ = setup(kafka, make_topic, simulator, 40)
    first, first_service = processor_for(settings)
    second, second_service = processor_for(settings)
    budget = first_service.client.budget.requests
    first_task = asyncio.create_task(first.run())
    try:
        await asyncio.wait_for(first.assigned.wait(), 30)
        while len(first.partitions) < 2:  # noqa: ASYNC110 - waits for the assignment
            await asyncio.sleep(0.05)
        assert budget.share == 1.0
        second_task = asyncio.create_task(second.run())
        while len(first.partitions) != 1 or len(second.partitions) != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert budget.share == 0.5
        assert second_service.client.budget.requests.share == 0.5
        second.stop()
        await second_task
        while len(first.partitions) < 2:  # noqa: ASYNC110 - waits for them to come back
            await asyncio.sleep(0.05)
        assert budget.share == 1.0
    finally:
        first.stop()
        await first_task
        await first_service.aclose()
        await second_service.aclose()
