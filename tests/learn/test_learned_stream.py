"""The learned tier through the real cascade: handler, client over HTTP, the simulator
in teacher mode answering a synthetic labelled file written to tmp_path."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from schemas.outputs import SentimentAnswer
from stream.config import Settings
from stream.evaluation.teacher import report_teacher, stream_with_teacher
from stream.learn.metrics import learned_tier_metrics
from stream.learn.tier import LearnedTier
from tests.learn.synth import reviews


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["original_index", "text", "label", "label_text"])
        for i, (text, label) in enumerate(rows):
            writer.writerow([i, text, int(label == "positive"), label])
    return path


@pytest.mark.asyncio
async def test_student_takes_over_from_a_clean_teacher_and_stays_right(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "reviews.csv", reviews(700, seed=5))
    run = await stream_with_teacher(
        "sentiment", data, Settings(), noise=0.0, window=350,
        # The teacher labels sentiment only; the simulator's intent for these texts is
        # arbitrary, so local answers leave it empty.
        options={"audit_share": 0.2, "local_may_omit": ["phrases", "intent"]},
    )  # fmt: skip
    first, second = run.windows()
    assert first.local_share < second.local_share  # cold start: the model answers
    assert second.local_share >= 0.3
    assert second.local_teacher_agreement is not None
    assert second.local_teacher_agreement >= 0.95
    assert second.usd_per_1000 < second.model_only_usd_per_1000
    assert second.accuracy >= second.model_only_accuracy - 0.05
    # Cold start: the first events are the model's answers, never worse than it alone.
    early = run.cascade[:50]
    assert not any(s.local for s in early)
    assert run.trained == sum(not s.local for s in run.cascade)
    table = report_teacher(run)
    assert "| 351-700 |" in table


def test_metrics_show_share_agreement_threshold_and_training() -> None:
    tier = LearnedTier(SentimentAnswer)
    tier.stats.local, tier.stats.deferred, tier.stats.trained = 30, 70, 70
    tier.stats.threshold = 0.8
    tier.stats.recent_audits.extend([True, True, True, False])
    handler: Any = SimpleNamespace(name="sentiment", learner=tier)
    found = {m.name: m.samples[0].value for m in learned_tier_metrics({"reviews": handler})}
    assert found["sluicegate_learned_local_share"] == 0.3
    assert found["sluicegate_learned_audited_agreement"] == 0.75
    assert found["sluicegate_learned_threshold"] == 0.8
    assert found["sluicegate_learned_training_events"] == 70
    fresh: Any = SimpleNamespace(name="sentiment", learner=LearnedTier(SentimentAnswer))
    found = {m.name: m.samples[0].value for m in learned_tier_metrics({"r": fresh})}
    assert math.isnan(found["sluicegate_learned_threshold"])


@pytest.mark.asyncio
async def test_a_tier_that_never_answers_costs_what_the_model_alone_costs(tmp_path: Path) -> None:
    # Each pass has a simulator of its own: the model-only pass used to find the cascade's
    # prompts in the simulated prompt cache and pay the cached price for them (1.7-2.3x).
    data = write_csv(tmp_path / "reviews.csv", reviews(200, seed=8))
    run = await stream_with_teacher(
        "sentiment", data, Settings(), noise=0.0, window=100, options={"local_target": 1.0}
    )
    assert not any(s.local for s in run.cascade)  # no agreement bound ever reaches 1.0
    for window in run.windows():
        assert window.cost_ratio == pytest.approx(1.0, abs=0.02)
