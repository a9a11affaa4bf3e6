"""Model answers per route by outcome, and a warning when a route's answers go bad.

An invalid answer is retried and then dead-lettered one event at a time, which is quiet:
a server whose answers are all cut off or malformed could run for minutes with nothing
at INFO. Every answer the model gave a route is counted here (the metric
``sluicegate_model_answers_total{route,outcome}``), and a route whose answers were mostly
invalid over the last ``WINDOW_S`` seconds logs a WARN line with the counts and the last
reason, at most once per window.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

OUTCOMES = ("valid", "invalid", "refused", "input_rejected")
BAD = ("invalid", "refused")
WINDOW_S = 60.0
# A warning needs this many bad answers in the window, and this share of all answers.
MIN_BAD = 5
MIN_BAD_SHARE = 0.5


@dataclass
class _Window:
    started: float
    counts: Counter[str] = field(default_factory=Counter)
    last_reason: str = ""


class AnswerQuality:
    """Per route: answers by outcome since start (the metric), and per window (the WARN)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.totals: dict[str, Counter[str]] = {}
        self._windows: dict[str, _Window] = {}
        self._clock = clock
        self.warnings = 0

    def record(self, route: str, outcome: str, reason: str = "") -> None:
        self.totals.setdefault(route, Counter())[outcome] += 1
        now = self._clock()
        window = self._windows.get(route)
        if window is None:
            window = self._windows[route] = _Window(now)
        window.counts[outcome] += 1
        if reason:
            window.last_reason = reason
        if now - window.started >= WINDOW_S:
            self._judge(route, window, now - window.started)
            self._windows[route] = _Window(now)

    def _judge(self, route: str, window: _Window, seconds: float) -> None:
        counts = window.counts
        bad = sum(counts[o] for o in BAD)
        total = sum(counts.values())
        if bad < MIN_BAD or bad < MIN_BAD_SHARE * total:
            return
        self.warnings += 1
        log.warning(
            "route %s: %d of %d model answers invalid in the last %.0fs (%d valid, %d "
            "refused); their events go to the DLQ. Last reason: %s. Check the model "
            "endpoint and model.output_mode / model.max_completion_tokens",
            route, bad, total, seconds, counts["valid"], counts["refused"],
            window.last_reason or "unknown",
        )  # fmt: skip
