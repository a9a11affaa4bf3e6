"""Every token counted: tallies per handler and route, dollars, and the daily budget.

Cached prompt tokens are billed at the cached price; calls on the ``flex`` tier at batch
prices (half). The budget covers one UTC day; when it is spent the policy decides:
pause consumption, answer with the local tier only, or stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stream.config import BudgetSettings, Prices, Settings
from stream.errors import ConfigError

FLEX_FACTOR = 0.5
DAY_S = 86400


def cost_usd(
    prices: Prices, *, prompt: float, cached: float, completion: float, tier: str = "default"
) -> float:
    uncached = max(0.0, prompt - cached)
    usd = (
        uncached * prices.input + cached * prices.cached_input + completion * prices.output
    ) / 1e6
    return usd * (FLEX_FACTOR if tier == "flex" else 1.0)


@dataclass
class Tally:
    events: int = 0
    calls: float = 0.0
    prompt: float = 0.0
    cached: float = 0.0
    completion: float = 0.0
    usd: float = 0.0


def check_prices(settings: Settings) -> None:
    """Refuse a config whose model ids have no price: the main model and every route's
    ``escalate_model``, when a route calls the model. ``run`` and ``config check`` both
    call it, so the fault is found before anything starts."""
    from stream.routes import needs_model  # noqa: PLC0415 - routes import handlers

    if not needs_model(settings):
        return
    meter = CostMeter(settings.budget)
    meter.prices_for(settings.model.model)
    for route in settings.routes:
        escalate = route.options.get("escalate_model")
        if isinstance(escalate, str):
            try:
                meter.prices_for(escalate)
            except ConfigError as exc:
                raise ConfigError(f"routes.{route.name}.options.escalate_model: {exc}") from None


class CostMeter:
    """What the model cost, per (handler, route), and whether the budget allows more."""

    def __init__(self, budget: BudgetSettings, clock: Callable[[], float] = time.time) -> None:
        self.budget = budget
        self.prices = budget.price_table()
        self._clock = clock
        self.tallies: dict[tuple[str, str], Tally] = {}
        self._day = self._today()
        self._spent_today = 0.0
        self._alerted: set[tuple[int, float]] = set()  # (day, share) already announced

    def _today(self) -> int:
        return int(self._clock() // DAY_S)

    def prices_for(self, model: str) -> Prices:
        found = self.prices.get(model)
        if found is None:
            raise ConfigError(
                f"budget.prices: no price for model {model!r}; known: "
                f'{", ".join(sorted(self.prices))}. Add [budget.prices."{model}"]'
            )
        return found

    def record(
        self,
        *,
        handler: str,
        route: str,
        model: str,
        prompt: float,
        cached: float,
        completion: float,
        calls: float = 1.0,
        tier: str = "default",
    ) -> float:
        """Count one event's tokens; return its cost in dollars."""
        usd = cost_usd(
            self.prices_for(model), prompt=prompt, cached=cached, completion=completion, tier=tier
        )
        tally = self.tallies.setdefault((handler, route), Tally())
        tally.events += 1
        tally.calls += calls
        tally.prompt += prompt
        tally.cached += cached
        tally.completion += completion
        tally.usd += usd
        if self._today() != self._day:
            self._day, self._spent_today = self._today(), 0.0
        self._spent_today += usd
        return usd

    @property
    def spent_today(self) -> float:
        return 0.0 if self._today() != self._day else self._spent_today

    @property
    def remaining_today(self) -> float | None:
        limit = self.budget.usd_per_day
        return None if limit is None else max(0.0, limit - self.spent_today)

    @property
    def exhausted(self) -> bool:
        return self.remaining_today == 0.0

    def exhausted_under(self, policy: str) -> bool:
        """True when the budget is spent and ``policy`` is the one configured."""
        return self.exhausted and self.budget.policy == policy

    def crossed(self) -> list[float]:
        """The ``budget.alert_at`` shares that today's spending has reached and that were
        not reported yet today; each is reported once a day."""
        limit = self.budget.usd_per_day
        if limit is None:
            return []
        spent, day = self.spent_today, self._today()
        new = [share for share in sorted(self.budget.alert_at)
               if spent >= share * limit and (day, share) not in self._alerted]  # fmt: skip
        self._alerted.update((day, share) for share in new)
        return new

    def seconds_to_next_day(self) -> float:
        return DAY_S - self._clock() % DAY_S

    def totals(self) -> Mapping[str, float]:
        out = {"events": 0.0, "prompt": 0.0, "cached": 0.0, "completion": 0.0, "usd": 0.0}
        for t in self.tallies.values():
            out["events"] += t.events
            out["prompt"] += t.prompt
            out["cached"] += t.cached
            out["completion"] += t.completion
            out["usd"] += t.usd
        return out
