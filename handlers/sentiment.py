"""``sentiment``: sentiment and intent of reviews and posts.

Local tier: VADER. It cannot see frustration or intent reliably, so it answers only
clear positives and negatives, with an intent read from a few unambiguous phrases, and
its confidence is the precision measured on labelled reviews (EVAL.md) at its margin
(the share of positive words minus the share of negative ones). It reads at most
``local.MAX_LOCAL_CHARS`` of a text, in a worker thread (its cost is quadratic).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from handlers import local, prompts
from handlers.enrich import Answer, EnrichingHandler
from handlers.model import Task
from schemas.events import Post, Review
from schemas.outputs import SentimentAnswer

TASK = Task(name="sentiment", instructions=prompts.SENTIMENT, output=SentimentAnswer)

# (|pos - neg| share margin, precision) measured with VADER on the 1,000 labelled
# reviews of yelp2 + imdb, for texts whose compound agrees in sign (|compound| > 0.5).
VADER_PRECISION = ((0.0, 0.6), (0.1, 0.85), (0.15, 0.94), (0.2, 0.98), (1.0, 0.99))
_FRUSTRATION = re.compile(
    r"!!|\b(still|again|yet again|unacceptable|ridiculous|waited|waiting|nobody|no one)\b", re.I
)
_INTENT_WORDS = (
    ("return", r"refund|return(ed|ing)?|money back|cancel\w*|send it back|exchange"),
    ("compare", r"better than|worse than|compared? (to|with)|vs\.?|versus|instead of|switched"),
    ("purchase", r"buy|bought|order(ed)?|purchased?|subscribe|upgrade|in stock|price"),
    ("support", r"help|how (do|can) i|doesn'?t work|not working|broken|error|fix|support"),
)
_INTENTS = tuple((name, re.compile(rf"\b({words})\b", re.I)) for name, words in _INTENT_WORDS)


def local_intent(text: str) -> str:
    for intent, pattern in _INTENTS:
        if pattern.search(text):
            return intent
    return "other"


class SentimentHandler(EnrichingHandler):
    """Sentiment (positive, neutral, negative, frustrated), intent and the phrases."""

    name = "sentiment"
    kind = Review
    default_threshold: ClassVar[float | None] = 0.9  # with static_tier only
    default_may_omit: ClassVar[tuple[str, ...]] = ("phrases",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ready = self.static_enabled and local.vader() is not None
        self._vader = local.ScoreBatcher(local.vader_many) if ready else None

    def make_task(self) -> Task:
        return TASK

    async def local_later(self, event: Review | Post) -> Answer | None:  # type: ignore[override]
        if self._vader is None:
            return None
        text = local.bounded(event.text())
        s = await self._vader.score(text)
        compound, margin = s["compound"], s["pos"] - s["neg"]
        if abs(compound) <= 0.5 or compound * margin <= 0:
            return None
        label = "positive" if compound > 0 else "negative"
        if label == "negative" and _FRUSTRATION.search(text):
            return None  # negative or frustrated: the model tells them apart
        confidence = local.calibrated(VADER_PRECISION, abs(margin))
        fields = {
            "sentiment": label,
            "intent": local_intent(text),
            "confidence": round(confidence, 3),
            "phrases": [],
        }
        return Answer(fields, confidence)
