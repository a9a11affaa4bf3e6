"""The learned local tier on ``/metrics``: per route, how much it answers and how well."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from handlers.base import Handler

if TYPE_CHECKING:  # the tier imports scikit-learn: only a route that learns loads it
    from stream.learn.tier import LearnedTier


def learned_tier_metrics(handlers: Mapping[str, Handler]) -> Iterator[Metric]:
    labels = ["route", "handler"]
    share = GaugeMetricFamily(
        "sluicegate_learned_local_share",
        "Share of the events the learned tier saw that it answered itself", labels=labels,
    )  # fmt: skip
    agreement = GaugeMetricFamily(
        "sluicegate_learned_audited_agreement",
        "Agreement with the model on the last 200 audited events (NaN: none yet)",
        labels=labels,
    )
    threshold = GaugeMetricFamily(
        "sluicegate_learned_threshold",
        "Confidence the learned tier needs to answer (NaN: not proven yet, it defers all)",
        labels=labels,
    )
    trained = CounterMetricFamily(
        "sluicegate_learned_training_events", "Model answers the learned tier learned from",
        labels=labels,
    )  # fmt: skip
    audited = CounterMetricFamily(
        "sluicegate_learned_audits", "Events the tier could answer that the model checked",
        labels=labels,
    )  # fmt: skip
    for route, handler in handlers.items():
        tier: LearnedTier | None = getattr(handler, "learner", None)
        if tier is None:
            continue
        stats, key = tier.stats, [route, handler.name]
        seen = stats.local + stats.deferred
        share.add_metric(key, stats.local / seen if seen else 0.0)
        measured = stats.audited_agreement
        agreement.add_metric(key, float("nan") if measured is None else measured)
        threshold.add_metric(key, float("nan") if stats.threshold is None else stats.threshold)
        trained.add_metric(key, stats.trained)
        audited.add_metric(key, stats.audited)
    yield share
    yield agreement
    yield threshold
    yield trained
    yield audited
