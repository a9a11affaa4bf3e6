"""Which enum label, boolean or score a field gets, judged from the event's text.

Enums are recognised by their values: sentiment-like (positive/negative/neutral/...),
moderation verdicts (safe/review/violates), harm categories, log levels. Booleans and
numbers are recognised by their field names (``toxic``, ``is_positive``, ``confidence``).
Anything else gets a value that appears in the text, else a stable hash of (text, field).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stream.simulator import oracle

# fmt: off
_POSITIVE = (
    "very_positive", "positive", "happy", "satisfied", "delighted", "pleased", "praise", "joy",
    "love", "excited", "grateful"
)
_NEGATIVE = (
    "very_negative", "angry", "frustrated", "negative", "dissatisfied", "unhappy", "upset",
    "annoyed", "complaint", "sad", "disappointed"
)
_NEUTRAL = (
    "neutral", "mixed", "indifferent"
)
_SAFE = (
    "safe", "allow", "allowed", "ok", "clean", "pass", "benign", "approve", "approved",
    "acceptable", "none"
)
_REVIEW = (
    "review", "needs_review", "flag", "flagged", "borderline", "uncertain", "escalate", "warn",
    "hold"
)
_VIOLATES = (
    "violates", "violation", "violating", "block", "blocked", "unsafe", "reject", "rejected",
    "harmful", "remove", "deny", "toxic", "abusive"
)
# fmt: on
_CATEGORY_ALIASES = {
    "harassment": "harassment",
    "bullying": "harassment",
    "insult": "harassment",
    "hate": "hate",
    "hate_speech": "hate",
    "violence": "violence",
    "threat": "harassment/threatening",
    "sexual": "sexual",
    "nsfw": "sexual",
    "self_harm": "self-harm",
    "illicit": "illicit",
    "illegal": "illicit",
    "drugs": "illicit",
    "profanity": "profanity",
    "toxicity": "profanity",
    "toxic": "profanity",
    "abusive": "profanity",
    "offensive": "profanity",
    "obscene": "profanity",
}
_LEVELS = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "err": "error",
    "error": "error",
    "crit": "critical",
    "critical": "critical",
    "fatal": "critical",
    "emergency": "critical",
}
_FRUSTRATION = re.compile(r"!!|\b(still|again|unacceptable|ridiculous|waited|waiting)\b", re.I)
_AFFIXES = re.compile(r"^(is|has|contains|flagged)_|_(score|probability|prob|flag|level)$")


def norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _first(values: Sequence[str], preferred: Sequence[str]) -> str | None:
    by_norm = {norm(v): v for v in values}
    return next((by_norm[p] for p in preferred if p in by_norm), None)


def _family_count(values: Sequence[str], *families: Sequence[str]) -> int:
    keys = {norm(v) for v in values}
    return sum(bool(keys & set(family)) for family in families)


def _sentiment_label(values: Sequence[str], text: str) -> str | None:
    s = oracle.sentiment(text)
    if s.compound >= 0.05:
        order = (("very_positive",) if s.compound >= 0.75 else ()) + _POSITIVE[1:]
        return _first(values, order) or _first(values, _NEUTRAL)
    if s.compound <= -0.05:
        strong = s.compound <= -0.5 or _FRUSTRATION.search(text) is not None
        order = _NEGATIVE if strong else ("negative", "dissatisfied", "disappointed", *_NEGATIVE)
        return _first(values, order) or _first(values, _NEUTRAL)
    mixed = s.pos > 0.1 and s.neg > 0.1
    return _first(values, ["mixed", "neutral"] if mixed else ["neutral", "mixed", "indifferent"])


def _verdict(values: Sequence[str], text: str) -> str | None:
    risk = oracle.harm(text)
    if risk >= 0.7 or (risk >= 0.5 and _first(values, _REVIEW) is None):
        return _first(values, _VIOLATES) or _first(values, _REVIEW)
    if risk >= 0.35:
        return _first(values, _REVIEW) or _first(values, _VIOLATES)
    return _first(values, _SAFE)


def _category(values: Sequence[str], text: str) -> str | None:
    scores = oracle.category_scores(text) | {"profanity": oracle.profanity(text)}
    ranked = sorted(
        (scores[_CATEGORY_ALIASES[norm(v)]], v) for v in values if norm(v) in _CATEGORY_ALIASES
    )
    if ranked and ranked[-1][0] > 0.5:
        return ranked[-1][1]
    return _first(values, ["none", "safe", "clean", "other", "ok"])


def _level(values: Sequence[str], text: str) -> str | None:
    by_level = {_LEVELS[norm(v)]: v for v in values if norm(v) in _LEVELS}
    for word in re.findall(r"[A-Za-z]+", text):
        level = _LEVELS.get(word.lower())
        if level in by_level and (word.isupper() or len(word) > 3):
            return by_level[level]
    return by_level.get("info")


def _mentioned(values: Sequence[str], text: str) -> str | None:
    lower = text.lower()
    found = [v for v in values if len(v) > 2 and norm(v).replace("_", " ") in lower]
    return max(found, key=len) if found else None


def enum_value(values: Sequence[object], text: str, path: str) -> object:
    """The label an attentive model would choose for ``text`` among ``values``."""
    labels = [v for v in values if isinstance(v, str)]
    if len(labels) >= 2:
        keys = {norm(v) for v in labels}
        choice: str | None = None
        if len(keys & _LEVELS.keys()) >= 2:
            choice = _level(labels, text)
        elif (
            _family_count(labels, _POSITIVE, _NEGATIVE) >= 1
            and len(keys & {*_POSITIVE, *_NEGATIVE, *_NEUTRAL}) >= 2
        ):
            choice = _sentiment_label(labels, text)
        elif len(keys & _CATEGORY_ALIASES.keys()) >= 2:
            choice = _category(labels, text)
        elif _family_count(labels, _SAFE, _REVIEW, _VIOLATES) >= 2:
            choice = _verdict(labels, text)
        choice = choice or _mentioned(labels, text)
        if choice is not None:
            return choice
    return oracle.stable_pick(list(values), text, path)


def _topic(name: str) -> str:
    return _AFFIXES.sub("", _AFFIXES.sub("", norm(name)))


def boolean_value(name: str, text: str, path: str) -> bool:
    topic = _topic(name)
    if topic in {"positive", "praise", "satisfied", "happy"}:
        return oracle.sentiment(text).compound >= 0.05
    if topic in {"negative", "complaint", "frustrated", "angry", "dissatisfied"}:
        return oracle.sentiment(text).compound <= -0.05
    score = harm_score(name, text)
    if score is not None:
        return score > 0.5
    return oracle.stable_fraction(text, path) < 0.5


def harm_score(name: str, text: str) -> float | None:
    """The harm probability a field named like a harm category should hold, if it is one."""
    topic = _topic(name)
    if topic in _CATEGORY_ALIASES:
        category = _CATEGORY_ALIASES[topic]
        if category == "profanity":
            return oracle.profanity(text)
        return oracle.category_scores(text)[category]
    if topic in {"flagged", "unsafe", "harmful", "harm", "violates", "policy_violation", "risk"}:
        return oracle.harm(text)
    return None


def unit_score(name: str, text: str, path: str) -> float | None:
    """A value in [0, 1] for fields named like scores, or None if the name says nothing."""
    topic = _topic(name)
    harmful = harm_score(name, text)
    if harmful is not None:
        return round(harmful, 4)
    if topic in {"sentiment", "polarity", "positivity"}:
        return round((oracle.sentiment(text).compound + 1) / 2, 4)
    if re.search(r"confidence|certainty|probability|score|likelihood", norm(name)):
        return round(0.7 + 0.28 * oracle.stable_fraction(text, path), 4)
    return None
