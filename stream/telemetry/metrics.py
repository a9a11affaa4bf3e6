"""``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` on an aiohttp server.

A collector reads the processor's and the model's state when Prometheus scrapes, so the
hot path carries no instrumentation library: counters are the processor's own counts
(per route), latency histograms its cheap ``Histogram``s per stage, and gauges are read
off the live objects (in-flight events, paused partitions, consumer lag, the DLQ cap, the
adaptive limit, the rate budget, the breaker, tokens and dollars per handler and route).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from handlers.base import Handler
from stream import secrets
from stream.config import KafkaSettings, MetricsSettings
from stream.errors import KafkaUnavailable
from stream.kafka.admin import check_reachable
from stream.learn.metrics import learned_tier_metrics
from stream.model.quality import OUTCOMES
from stream.model.service import ModelService
from stream.runtime.processor import Processor
from stream.telemetry.histogram import Histogram

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class RuntimeCollector(Collector):
    def __init__(
        self,
        processor: Processor,
        model: ModelService | None,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.processor = processor
        self.model = model
        self.handlers = dict(handlers or {})  # route name -> its handler

    def collect(self) -> Iterator[Metric]:
        for metric in self._collect():
            yield masked(metric)

    def _collect(self) -> Iterator[Metric]:
        p = self.processor
        events = CounterMetricFamily(
            "sluicegate_events",
            "Events by what became of them, per route (produced: records acknowledged, "
            "alerts and dead letters included)",
            labels=["outcome", "route"],
        )
        for route in p.routes():
            for outcome in ("consumed", "produced", "dead_lettered", "skipped", "redelivered"):
                events.add_metric([outcome, route.name], getattr(route.counts, outcome))
        yield events
        for name in ("retries", "pauses", "resumes", "commits", "transactions"):
            value = getattr(p.stats, name)
            yield CounterMetricFamily(f"sluicegate_{name}", f"Processor {name}", value=value)
        parts = list(p.partitions.values())
        yield GaugeMetricFamily(
            "sluicegate_in_flight_events", "Events held in memory", value=sum(x.load for x in parts)
        )
        yield GaugeMetricFamily("sluicegate_assigned_partitions", "Assigned", value=len(parts))
        yield GaugeMetricFamily(
            "sluicegate_paused_partitions", "Paused partitions", value=sum(x.paused for x in parts)
        )
        stalled = GaugeMetricFamily(
            "sluicegate_partition_stalled_seconds",
            "Seconds without a finished event, per partition with events in flight for "
            "longer than processing.stall_timeout_s (absent: none is stuck)",
            labels=["topic", "partition"],
        )
        for stall in p.stalls:
            stalled.add_metric([stall.tp[0], str(stall.tp[1])], stall.seconds)
        yield stalled
        lag = GaugeMetricFamily(
            "sluicegate_consumer_lag",
            "Messages behind the high watermark not yet finished, per assigned partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in sorted(p.lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        stages = HistogramMetricFamily(
            "sluicegate_stage_seconds",
            "Seconds per event by stage: handle (the handler, model calls and retries "
            "included), model (one model call), produce (queued until acknowledged; "
            "exactly-once: the transaction's commit)",
            labels=["stage"],
        )
        for stage, values in p.stages.items():
            stages.add_metric([stage], values.cumulative(), values.sum)
        if self.model is not None:
            values = self.model.client.latency
            stages.add_metric(["model"], values.cumulative(), values.sum)
        yield stages
        cap, limits = p.dlq_cap, p.settings.dlq
        yield GaugeMetricFamily(
            "sluicegate_dlq_window_ratio",
            f"Dead-lettered share of the last dlq.window ({limits.window}) events",
            value=cap.ratio,
        )
        yield GaugeMetricFamily(
            "sluicegate_dlq_max_ratio", "dlq.max_ratio: the share that stops the processor",
            value=limits.max_ratio,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "sluicegate_dlq_consecutive", "Events dead-lettered in a row, up to the latest",
            value=cap.consecutive,
        )  # fmt: skip
        yield from self._handlers()
        yield from learned_tier_metrics(self.handlers)
        if self.model is not None:
            yield from self._model(self.model)

    def _handlers(self) -> Iterator[Metric]:
        """What the handlers answered, by tier, and the alerts they raised, per route."""
        answers = CounterMetricFamily(
            "sluicegate_answers", "Enriched events by the tier that answered",
            labels=["route", "handler", "tier"],
        )  # fmt: skip
        alerts = CounterMetricFamily(
            "sluicegate_alerts", "Alerts raised", labels=["route", "handler", "kind"]
        )
        raised = Counter(self.processor.alerts_raised)
        for route, handler in self.handlers.items():
            for tier, count in getattr(handler, "tiers", {}).items():
                answers.add_metric([route, handler.name, tier], count)
            for kind, count in getattr(handler, "alerts_raised", {}).items():
                raised[(route, kind)] += count
        handler_names = {r.name: r.settings.handler for r in self.processor.routes()}
        for (route, kind), count in sorted(raised.items()):
            alerts.add_metric([route, handler_names.get(route, ""), kind], count)
        yield answers
        yield alerts

    def _model(self, model: ModelService) -> Iterator[Metric]:
        client, meter = model.client, model.meter
        yield GaugeMetricFamily(
            "sluicegate_model_concurrency_limit", "Adaptive concurrency limit",
            value=client.concurrency.limit,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "sluicegate_model_in_flight",
            "Model calls in flight",
            value=client.concurrency.in_flight,
        )
        yield GaugeMetricFamily(
            "sluicegate_model_requests_budget", "Requests left in the RPM bucket",
            value=client.budget.requests.level,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "sluicegate_model_tokens_budget", "Tokens left in the TPM bucket",
            value=client.budget.tokens.level,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "sluicegate_model_breaker_state", "0 closed, 1 half-open, 2 open",
            value=BREAKER_STATES[client.breaker.state],
        )  # fmt: skip
        yield CounterMetricFamily(
            "sluicegate_model_rate_limited", "429 answers", value=client.rate_limited
        )
        requests = CounterMetricFamily(
            "sluicegate_model_requests", "Chat requests by outcome", labels=["status"]
        )
        for status in ("ok", "rate_limited", "timeout", "error"):
            requests.add_metric([status], client.requests[status])
        yield requests
        answers = CounterMetricFamily(
            "sluicegate_model_answers",
            "Model answers per route by outcome: valid, invalid (after the repair attempt), "
            "refused, input_rejected (e.g. over the context window)",
            labels=["route", "outcome"],
        )
        for route, counts in sorted(model.quality.totals.items()):
            for outcome in OUTCOMES:
                answers.add_metric([route, outcome], counts[outcome])
        yield answers
        yield histogram("sluicegate_model_seconds", "Successful model calls", client.latency)
        tokens = CounterMetricFamily(
            "sluicegate_model_tokens", "Tokens", labels=["handler", "route", "kind"]
        )
        usd = CounterMetricFamily(
            "sluicegate_model_cost_usd", "Dollars", labels=["handler", "route"]
        )
        for (handler, route), tally in meter.tallies.items():
            tokens.add_metric([handler, route, "prompt"], tally.prompt)
            tokens.add_metric([handler, route, "cached"], tally.cached)
            tokens.add_metric([handler, route, "completion"], tally.completion)
            usd.add_metric([handler, route], tally.usd)
        yield tokens
        yield usd
        remaining = meter.remaining_today
        if remaining is not None:
            yield GaugeMetricFamily(
                "sluicegate_budget_remaining_usd", "Budget left today", value=remaining
            )
            yield GaugeMetricFamily(
                "sluicegate_budget_usd_per_day", "The daily budget",
                value=meter.budget.usd_per_day or 0.0,
            )  # fmt: skip


class BrokerCheck:
    """Whether the cluster answers a metadata request, asked at most every ``every_s``
    (probes come every few seconds; each answer is reused meanwhile)."""

    def __init__(self, kafka: KafkaSettings, every_s: float = 5.0) -> None:
        self.kafka, self.every_s = kafka, every_s
        self._checked_at = -every_s
        self._problem: str | None = None

    async def problem(self) -> str | None:
        now = time.monotonic()
        if now - self._checked_at >= self.every_s:
            self._checked_at = now
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, check_reachable, self.kafka, 2.0)
                self._problem = None
            except KafkaUnavailable as exc:
                self._problem = str(exc)
        return self._problem


def masked(metric: Metric) -> Metric:
    """``metric`` with its label values masked: a name taken from the configuration or an
    error's stage must not carry a secret onto the scrape."""
    metric.samples = [
        sample._replace(labels={k: secrets.mask_text(v) for k, v in sample.labels.items()})
        for sample in metric.samples
    ]
    return metric


def histogram(name: str, documentation: str, values: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], values.cumulative(), values.sum)
    return family


def make_app(
    processor: Processor,
    model: ModelService | None,
    handlers: Mapping[str, Handler] | None = None,
) -> web.Application:
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(processor, model, handlers))

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    broker = BrokerCheck(processor.settings.kafka)

    async def readyz(_request: web.Request) -> web.Response:
        if not (processor.assigned.is_set() and processor.partitions):
            return web.Response(status=503, text="no partitions assigned yet\n")
        if processor.stalls:
            text = "\n".join(str(stall) for stall in processor.stalls)
            return web.Response(status=503, text=f"{text}\n")
        problem = await broker.problem()
        if problem is not None:
            return web.Response(status=503, text=f"{problem}\n")
        return web.Response(text="ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


@asynccontextmanager
async def serving(
    settings: MetricsSettings,
    processor: Processor,
    model: ModelService | None,
    handlers: Mapping[str, Handler] | None = None,
) -> AsyncIterator[int | None]:
    """Serve while the ``with`` block runs; yields the bound port (None if disabled)."""
    if not settings.enabled:
        yield None
        return
    runner = web.AppRunner(make_app(processor, model, handlers), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = next((s.getsockname()[1] for s in sockets if s.family == socket.AF_INET), None)
        yield port or settings.port
    finally:
        await runner.cleanup()
