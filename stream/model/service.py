"""The model as handlers see it (``handlers.model.ModelPort``): one per process.

Budget first (a spent budget never reaches the network), then the cache and the
micro-batcher, then the client with its limits; every answer is metered per handler and
route, cache hits included at no cost.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx2
from pydantic import BaseModel

from handlers.model import Moderation, Reply, Task
from schemas.enriched import Alert
from stream.config import Settings
from stream.model.batcher import Batcher, Spent
from stream.model.cache import TtlLru
from stream.model.client import ModelClient
from stream.model.cost import CostMeter
from stream.model.errors import (
    BudgetExhausted,
    BudgetPaused,
    ModelInputRejected,
    ModelOutputInvalid,
    ModelRefused,
)
from stream.model.quality import AnswerQuality


class ModelService:
    def __init__(
        self, settings: Settings, *, http_client: httpx2.AsyncClient | None = None
    ) -> None:
        model = settings.model
        self.client = ModelClient(model, http_client=http_client)
        self.cache: TtlLru[BaseModel] = TtlLru(model.cache_entries, model.cache_ttl_s)
        self.batcher = Batcher(
            self.client,
            max_events=model.batch_max_events,
            max_tokens=model.batch_max_tokens,
            max_wait_s=model.batch_wait_ms / 1000,
            idle_s=model.batch_idle_ms / 1000,
            cache=self.cache,
        )
        self.meter = CostMeter(settings.budget)
        self.meter.prices_for(model.model)  # no price, no metering: refuse at start-up
        self.moderations = 0  # calls to the free moderation endpoint
        self.quality = AnswerQuality()  # model answers per route by outcome
        self._alerts: list[Alert] = []

    async def ask(self, task: Task, text: str, *, route: str, batch: bool = True) -> Reply:
        self._check_budget()

        def charge(spent: Spent) -> float:
            # Called for each request's share of this event, answered or failed.
            usd = self.meter.record(
                handler=task.name, route=route, model=spent.model, prompt=spent.prompt,
                cached=spent.cached, completion=spent.completion, calls=spent.calls,
                tier=spent.tier,
            )  # fmt: skip
            if usd:
                self._announce_budget(route)
            return usd

        try:
            reply = await self.batcher.ask(task, text, batch=batch, charge=charge)
        except ModelOutputInvalid as exc:
            bad = "refused" if isinstance(exc, ModelRefused) else "invalid"
            self.quality.record(route, bad, str(exc))
            raise
        except ModelInputRejected as exc:
            self.quality.record(route, "input_rejected", str(exc))
            raise
        if reply.source == "model":
            self.quality.record(route, "valid")
        if reply.source == "cache":  # counted as an event of the route, at no cost
            self.meter.record(handler=task.name, route=route, model=reply.model,
                              prompt=0, cached=0, completion=0, calls=0)  # fmt: skip
        return reply

    def _announce_budget(self, route: str) -> None:
        meter = self.meter
        for share in meter.crossed():
            day = datetime.now(UTC).date().isoformat()
            spent, limit = meter.spent_today, meter.budget.usd_per_day or 0.0
            self._alerts.append(Alert(
                kind="budget.threshold", severity="critical" if share >= 1 else "warning",
                dedup_key=f"budget:{day}:{share:g}",
                reason=f"{share:.0%} of the daily model budget spent (${spent:.4f} of "
                f"${limit:g}; policy {meter.budget.policy})",
                route=route, at=datetime.now(UTC),
                details={"share": share, "spent_usd": spent, "usd_per_day": limit},
            ))  # fmt: skip

    def take_alerts(self) -> list[Alert]:
        alerts, self._alerts = self._alerts, []
        return alerts

    async def moderate(self, text: str, *, route: str) -> Moderation:
        """The free endpoint: no tokens and no dollars to meter, only the call."""
        scores, model = await self.client.moderate(text)
        self.moderations += 1
        return Moderation(scores, model)

    def _check_budget(self) -> None:
        meter = self.meter
        if not meter.exhausted:
            return
        spent = f"the daily budget of ${meter.budget.usd_per_day} is spent"
        if meter.budget.policy == "stop":
            raise BudgetExhausted(f"{spent} (budget.policy = stop)")
        raise BudgetPaused(
            f"{spent}; model calls wait for the next UTC day (budget.policy = "
            f"{meter.budget.policy})",
            retry_after=min(60.0, meter.seconds_to_next_day()),
            local_only=meter.budget.policy == "local-only",
        )

    def set_share(self, fraction: float) -> None:
        """This replica's share of the account's ``model.rpm``/``model.tpm``: the runtime
        calls it on every rebalance with (partitions assigned to this replica) / (all
        partitions of its routes' input topics)."""
        self.client.set_share(fraction)

    def unsent_tasks(self) -> set[asyncio.Task[Any]]:
        """Tasks whose model ask only waits (batch window, rate budget) and was not sent:
        at a revoke the runtime may cancel them and leave their offsets uncommitted; the
        other events of their batches are not affected (see ``Batcher.unsent_tasks``)."""
        return self.batcher.unsent_tasks()

    def should_pause(self) -> bool:
        """For the processor's ``pause_while``: the breaker is open, or the budget is
        spent under the "pause" policy."""
        return self.client.breaker.is_open or self.meter.exhausted_under("pause")

    async def aclose(self) -> None:
        await self.batcher.aclose()
        await self.client.aclose()
