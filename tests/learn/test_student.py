"""The student and its deferral policy, on synthetic data (no model, no network)."""

from __future__ import annotations

import asyncio
import csv
import random
from pathlib import Path
from typing import Any

import pytest

from schemas.outputs import SentimentAnswer
from stream.learn.student import Student, agrees, enum_fields, features
from stream.learn.tier import LearnedTier, choose_threshold, wilson_lower
from tests.learn.synth import reviews


def answer(label: str) -> dict[str, object]:
    return {"sentiment": label, "intent": "other", "confidence": 0.9, "phrases": ["x"]}


def test_enum_fields_come_from_the_answer_model() -> None:
    enums = enum_fields(SentimentAnswer)
    assert enums["sentiment"] == ("positive", "neutral", "negative", "frustrated")
    assert "phrases" not in enums
    assert "confidence" not in enums


def test_student_learns_enum_fields_and_is_sure_of_clear_cases() -> None:
    data = reviews(400)
    student = Student(enum_fields(SentimentAnswer), may_omit=("phrases",))
    assert student.guess(features(["great pizza"]))[0].confidence is None  # nothing learned
    for i in range(0, 300, 50):
        chunk = data[i : i + 50]
        student.learn(features([t for t, _ in chunk]), [answer(lab) for _, lab in chunk])
    held_out = data[300:]
    guesses = student.guess(features([t for t, _ in held_out]))
    right = sum(g.fields["sentiment"] == lab for g, (_, lab) in zip(guesses, held_out, strict=True))
    assert right / len(held_out) >= 0.95
    assert all(g.confidence is not None for g in guesses)
    assert guesses[0].fields["phrases"] is None  # omitted: left empty, not invented


def test_a_free_text_field_it_may_not_omit_means_no_answer() -> None:
    data = reviews(100)
    student = Student(enum_fields(SentimentAnswer))  # phrases may not be omitted
    student.learn(features([t for t, _ in data]), [answer(lab) for _, lab in data])
    assert all(g.confidence is None for g in student.guess(features(["great pizza"])))


def test_score_fields_learn_per_key_and_an_unlearned_key_blocks() -> None:
    student = Student({"action": ("safe", "violates")}, min_trained=20)
    data = reviews(120, seed=1)
    rows = features([t for t, _ in data])
    answers: list[dict[str, Any]] = [
        {"action": "violates" if lab == "negative" else "safe",
         "categories": {"harassment": 0.9 if lab == "negative" else 0.02}}
        for _, lab in data
    ]  # fmt: skip
    student.learn(rows, answers)
    (guess,) = student.guess(features(["awful terrible staff"]))
    assert guess.confidence is not None
    assert guess.fields["action"] == "violates"
    assert guess.fields["categories"]["harassment"] >= 0.5
    # A policy category the model starts scoring: too few answers of it to judge.
    student.learn(rows[:5], [{**a, "categories": {**a["categories"], "spam": 0.0}}
                             for a in answers[:5]])  # fmt: skip
    (guess,) = student.guess(features(["awful terrible staff"]))
    assert guess.confidence is None


def test_agreement_compares_labels_and_score_sides() -> None:
    fields = ("action", "categories")
    guess = {"action": "safe", "categories": {"hate": 0.1}, "reason": None}
    assert agrees(guess, {"action": "safe", "categories": {"hate": 0.3}, "reason": "r"}, fields)
    assert not agrees(guess, {"action": "safe", "categories": {"hate": 0.7}}, fields)
    assert not agrees(guess, {"action": "review", "categories": {"hate": 0.1}}, fields)


def test_threshold_is_the_lowest_confidence_that_keeps_the_target() -> None:
    rng = random.Random(0)
    pairs = [(0.9 + rng.random() * 0.1, True, 1.0) for _ in range(300)]  # sure and right
    pairs += [(0.5 + rng.random() * 0.3, rng.random() < 0.6, 1.0) for _ in range(300)]
    threshold, curve = choose_threshold(pairs, 0.95, 50)
    assert threshold is not None
    assert 0.75 <= threshold <= 0.95
    assert curve.at(0.99) == 1.0
    # An unreachable target: no threshold, everything goes to the model.
    assert choose_threshold(pairs, 1.01, 50)[0] is None
    # Too few comparisons to prove anything.
    assert choose_threshold(pairs[:20], 0.95, 50)[0] is None
    assert wilson_lower(1.0, 10) < 1.0


@pytest.mark.asyncio
async def test_tier_takes_over_keeps_agreement_and_defers_after_drift() -> None:
    tier = LearnedTier(SentimentAnswer, may_omit=("phrases",), audit_share=0.2, seed=1,
                       train_batch=32)  # fmt: skip
    flip = False

    def teacher(label: str) -> str:
        return ("negative" if label == "positive" else "positive") if flip else label

    async def stream(data: list[tuple[str, str]]) -> list[bool | None]:
        """Per event: None if the model answered, else whether the local answer agreed."""
        out: list[bool | None] = []
        for i in range(0, len(data), 32):
            chunk = data[i : i + 32]
            decisions = await asyncio.gather(*(tier.decide(text) for text, _ in chunk))
            for (_, label), decision in zip(chunk, decisions, strict=True):
                if decision.local:
                    fields, _ = tier.local_fields(decision)
                    out.append(fields["sentiment"] == teacher(label))
                else:
                    tier.observe(decision, answer(teacher(label)))
                    out.append(None)
            await tier.drain()
        return out

    first = await stream(reviews(600, seed=2))
    late = [x for x in first[400:] if x is not None]
    assert tier.stats.threshold is not None
    assert len(late) >= 100  # the student answers most of the late events itself
    assert sum(late) / len(late) >= 0.95
    assert tier.stats.audited > 0
    assert tier.stats.trained == sum(x is None for x in first)

    flip = True  # the model changes its mind about everything: audits disagree
    after = await stream(reviews(400, seed=3))
    tail = after[-200:]
    assert sum(x is not None for x in tail) < len(late) / 2  # it defers far more
    assert (tier.stats.audited_agreement or 0.0) < 0.95


def test_scores_are_scikit_learns_probabilities_from_weights_laid_out_once() -> None:
    data = reviews(200, seed=4)
    student = Student({"sentiment": ("positive", "negative"), "tone": ("calm", "loud", "flat")})
    rows = features([t for t, _ in data])
    tones = ("calm", "loud", "flat")
    student.learn(rows, [{"sentiment": lab, "tone": tones[i % 3]}
                         for i, (_, lab) in enumerate(data)])  # fmt: skip
    for name, model in student.enum_models.items():
        mine = student._proba(model, rows[:50])
        assert mine == pytest.approx(model.predict_proba(rows[:50]), abs=1e-12), name
    before = student.guess(rows[:5])
    student.learn(rows[:20], [{"sentiment": "positive", "tone": "calm"}] * 20)
    after = student.guess(rows[:5])  # laid out again: the new weights score
    assert [g.confidence for g in before] != [g.confidence for g in after]


def test_the_ceiling_is_what_hindsight_could_answer_at_the_target(tmp_path: Path) -> None:
    from stream.evaluation.ceiling import ceilings  # noqa: PLC0415
    from stream.evaluation.handlers import read_sentiment  # noqa: PLC0415

    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label_text"])
        writer.writerows(reviews(400, seed=2))
    first, second = ceilings("sentiment", read_sentiment(path, None), window=200)
    assert first.events == second.events == 200
    assert first.share < second.share  # the first guesses are made knowing nothing
    assert second.accuracy >= 0.95
    assert second.share >= 0.9
