"""Cheap judgements of an event's text, so simulated labels make sense.

Sentiment comes from VADER and harm from alt-profanity-check when the ``local`` extra
is installed; without them, small keyword lists stand in. Category hints for moderation
are keyword lists either way. Everything else is a stable hash of the text and the
field, so the same event always gets the same answer.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, TypeVar

T = TypeVar("T")

MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "harassment": ("idiot", "stupid", "moron", "loser", "shut up", "pathetic", "worthless"),
    "harassment/threatening": ("i will hurt you", "i'll kill you", "watch your back"),
    "hate": ("subhuman", "inferior race", "vermin", "go back to your country"),
    "hate/threatening": ("exterminate them", "wipe them out"),
    "illicit": ("cocaine", "heroin", "meth", "counterfeit", "launder", "stolen card"),
    "illicit/violent": ("make a bomb", "build a bomb", "poison someone"),
    "self-harm": ("kill myself", "suicide", "self-harm", "cut myself", "end my life"),
    "self-harm/intent": ("i want to die", "kill myself", "end my life"),
    "self-harm/instructions": ("how to kill myself", "ways to commit suicide"),
    "sexual": ("porn", "nude", "explicit sex"),
    "sexual/minors": (),
    "violence": ("kill", "shoot", "stab", "murder", "beat you", "bomb", "attack you"),
    "violence/graphic": ("gore", "dismember", "mutilat", "blood everywhere"),
}
# fmt: off
_POSITIVE_WORDS = frozenset(
    {
        "love", "loved", "great", "fantastic", "excellent", "amazing", "good", "happy", "wonderful",
        "perfect", "best", "awesome", "recommend", "thanks", "glad", "nice"
    }
)
_NEGATIVE_WORDS = frozenset(
    {
        "hate", "hated", "terrible", "awful", "bad", "worst", "broken", "angry", "disappointed",
        "useless", "horrible", "poor", "slow", "refund", "never", "rude", "waste"
    }
)
_PROFANE_WORDS = frozenset(
    {
        "damn", "shit", "fuck", "fucking", "crap", "bitch", "bastard", "asshole", "idiot"
    }
)
# fmt: on
_WORD = re.compile(r"[a-z']+")
# Judgements are pure functions of the text: remember the recent ones.
_SEEN_MAX = 20_000
_PROFANE_SEEN: dict[str, float] = {}
_EXPECTED: ContextVar[tuple[str, ...]] = ContextVar("simulator_expected_texts", default=())


@dataclass(frozen=True)
class Sentiment:
    """VADER's scores: ``compound`` in [-1, 1]; ``pos``/``neg`` shares in [0, 1]."""

    compound: float
    pos: float
    neg: float


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def stable_pick(options: Sequence[T], *parts: object) -> T:
    return options[int(stable_fraction(*parts) * len(options))]


@cache
def _vader() -> Callable[[str], dict[str, float]] | None:
    try:
        from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]  # noqa: PLC0415
            SentimentIntensityAnalyzer,
        )
    except ImportError:
        return None
    analyzer: Any = SentimentIntensityAnalyzer()
    scores: Callable[[str], dict[str, float]] = analyzer.polarity_scores
    return scores


@cache
def _profanity() -> Callable[[list[str]], Sequence[float]] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn may warn about pickled versions
            import profanity_check  # type: ignore[import-untyped]  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - optional extra: missing or broken means fall back
        return None
    predict: Callable[[list[str]], Sequence[float]] = profanity_check.predict_prob
    return predict


def warm() -> None:
    """Load the optional models now (about a second), not on the first request."""
    _vader()
    _profanity()


@lru_cache(maxsize=_SEEN_MAX)
def sentiment(text: str) -> Sentiment:
    vader = _vader()
    if vader is None:
        return keyword_sentiment(text)
    scores = vader(text)
    return Sentiment(scores["compound"], scores["pos"], scores["neg"])


def keyword_sentiment(text: str) -> Sentiment:
    """The stand-in for VADER: counts of a few clearly positive and negative words."""
    words = _WORD.findall(text.lower())
    pos = sum(w in _POSITIVE_WORDS for w in words)
    neg = sum(w in _NEGATIVE_WORDS for w in words)
    total = max(1, len(words))
    return Sentiment((pos - neg) / (pos + neg + 1), pos / total, neg / total)


def expect(texts: Iterable[str]) -> None:
    """Announce the texts this request (task) may ask about: the first profanity question
    scores them all in one model call. Each call costs ~3 ms whatever its size and blocks
    the event loop, so a request pays it at most once, and only if it asks."""
    _EXPECTED.set(tuple(texts))


def prime(texts: Iterable[str]) -> None:
    """Score the profanity of ``texts`` not seen yet, in one model call."""
    missing = list(dict.fromkeys(t for t in texts if t not in _PROFANE_SEEN))
    if not missing:
        return
    predict = _profanity()
    found = predict(missing) if predict is not None else map(keyword_profanity, missing)
    for text, probability in zip(missing, found, strict=True):
        _PROFANE_SEEN[text] = float(probability)
    while len(_PROFANE_SEEN) > _SEEN_MAX:
        del _PROFANE_SEEN[next(iter(_PROFANE_SEEN))]


def profanity(text: str) -> float:
    """Probability that ``text`` is profane or abusive."""
    if text not in _PROFANE_SEEN:
        prime([text, *_EXPECTED.get()])
    return _PROFANE_SEEN[text]


def keyword_profanity(text: str) -> float:
    """The stand-in for alt-profanity-check: a few swear words and insults."""
    hits = sum(w in _PROFANE_WORDS for w in _WORD.findall(text.lower()))
    return min(0.98, 0.02 + 0.45 * hits)


def _mentions(text: str, phrase: str) -> bool:
    if " " in phrase or not phrase.isalpha():
        return phrase in text
    return re.search(rf"\b{re.escape(phrase)}", text) is not None


def category_scores(text: str) -> dict[str, float]:
    """A score in [0, 1] per moderation category; above 0.5 means flagged."""
    return dict(_category_scores(text))


@lru_cache(maxsize=_SEEN_MAX)
def _category_scores(text: str) -> tuple[tuple[str, float], ...]:
    lower = text.lower()
    rude = profanity(text)
    scores = {}
    for category in MODERATION_CATEGORIES:
        hits = sum(_mentions(lower, phrase) for phrase in _CATEGORY_WORDS[category])
        base = 1e-4 + 4e-3 * stable_fraction(text, category)
        if category == "harassment":
            base = max(base, rude * 0.9)
        scores[category] = round(min(0.99, 0.86 + 0.05 * (hits - 1)) if hits else base, 6)
    return tuple(scores.items())


def harm(text: str) -> float:
    """How likely ``text`` breaks a content policy: the worst of all signals."""
    return max(profanity(text), *category_scores(text).values())
