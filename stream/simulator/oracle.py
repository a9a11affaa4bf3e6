"""Cheap judgements of an event's text, so simulated labels make sense.

Sentiment comes from VADER and harm from alt-profanity-check when the ``local`` extra
is installed; without them, small keyword lists stand in. Category hints for moderation
are keyword lists either way. A log line's template, parameters, component and time
come from its header and a few masks for variables (``log_line``), as a model asked to
parse it would write them. Everything else is a stable hash of the text and the field,
so the same event always gets the same answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from handlers import local
from handlers.logs.templates import slot_names
from schemas.outputs import MODERATION_CATEGORIES
from stream.simulator.log_teacher import LogTeacher

T = TypeVar("T")

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


def warm() -> None:
    """Load the optional models now (about a second), not on the first request."""
    local.vader()
    local.profanity()


@lru_cache(maxsize=_SEEN_MAX)
def sentiment(text: str) -> Sentiment:
    vader = local.vader()
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
    predict = local.profanity()
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


# -- Log lines: what a model asked for a line's template, component or time would write --

_LOG_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_LOG_STAMP = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
    rf"|(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_LOG_MON} [ \d]?\d \d{{2}}:\d{{2}}:\d{{2}} \d{{4}}"
    rf"|{_LOG_MON} +\d{{1,2}} \d{{2}}:\d{{2}}:\d{{2}}"
    r"|\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}|\d{6} \d{6}|\d{2}\.\d{2} \d{2}:\d{2}:\d{2}"
    r"|\d{8}-\d{1,2}:\d{1,2}:\d{1,2}(?::\d{1,3})?"
)
_LOG_LEVEL = r"(?i:trace|debug|info|notice|warn|warning|error|err|crit|critical|fatal|severe)"
_LOG_HEAD = re.compile(rf"^\s*\[?(?P<stamp>{_LOG_STAMP})\]?[\s|,-]*")
_LOG_STEPS = (
    re.compile(r"^(?P<component>[^|\s]+)\|\d+\|"),  # stamp|component|pid|message
    re.compile(r"^\d+\s+"),  # a pid
    re.compile(rf"^\[?{_LOG_LEVEL}\]?(?=[\s:])[\s:-]*"),
    re.compile(r"^\[.*?(?P<component>[\w$.]+)(?:@\d+)?\]\s+-\s+"),  # [thread:Class@12] -
    re.compile(r"^[\w.-]+\s+(?P<component>[^\s:]+?)(?:\[\d+\])?:\s+"),  # host program[pid]:
    re.compile(r"^(?P<component>[^\s:]+?)(?:\[\d+\])?:\s+"),  # component:
    re.compile(r"^(?P<component>[^\s\[\]]+(?: \*\d+)?) - "),  # program - message
)
_VARIABLE_KEYS = (
    "user|username|uid|euid|gid|rhost|host|hostname|ip|addr|address|port|pid|id|session"
    "|sessionid|name|file|path|url|time|size|count|total|duration|token|key"
)
_LOG_VARIABLE = re.compile(
    "|".join(
        (
            r"(?P<url>\b[a-zA-Z][\w+.-]*://[^\s,;)\]'\"]+)",
            rf"(?P<time>{_LOG_STAMP})",
            r"(?P<uuid>\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b)",
            r"(?P<ip>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.]))",
            r"(?P<host>(?<![\w.-])(?:[A-Za-z0-9-]+\.)+"
            r"(?:com|net|org|edu|gov|io|co|uk|de|fr|jp|cn|hk|ru|info|local)(?::\d{1,5})?(?![\w-]))",
            r"(?P<path>(?<![\w/.:])(?:/[\w.@%+~-]+)+/?)",
            r"(?P<object>\b[\w.$]+@[0-9a-f]{6,}\b)",
            r"(?P<size>(?<![\w.])\d+(?:\.\d+)? ?(?:[KMGT]i?B|B)(?!\w))",
            r"(?P<hex>\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b)",
            r"(?P<id>\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*?_-?\d+\w*)",
            rf"(?P<key>\b(?i:{_VARIABLE_KEYS})=)(?P<value>[^\s,;&)]+)",
            # an account name: "user bob from", "for root [preauth]", "for user news"
            r"(?P<who>\b(?:[Uu]ser|for) )(?P<account>(?!invalid\b|unknown\b|user\b)[\w.@-]+)"
            r"(?=[,;]|\s+(?:from|by)\b|\s+\[|\s*$)",
            r"(?P<quote>[\"'])(?P<quoted>[^\"'\s]*[\d/][^\"']*)(?P=quote)",
            r"(?P<flag>\b(?:true|false)\b)",
            r"(?P<number>(?<![\w.])[-+]?\d+(?:[.,:-]\d+)*(?!\w))",
        )
    )
)
_WORD_BEFORE = re.compile(r"([A-Za-z_][A-Za-z_]*)[^\w]{0,3}$")
_NOT_NAMES = frozenset({"from", "to", "for", "in", "at", "of", "by", "with", "on", "is", "as", "="})


@dataclass(frozen=True)
class LogLine:
    """A log line as a model reads it: header fields and the message, templated."""

    content: str
    timestamp: str | None
    component: str | None
    template: str
    parameters: tuple[tuple[str, str], ...]  # (name, value) per ``<*>``


def _log_header(text: str) -> tuple[str, str | None, str | None]:
    """(message, timestamp, component): the header is only stripped when the line starts
    with a timestamp, so a bare message such as ``pam_unix(sshd:auth): ...`` stays whole."""
    head = _LOG_HEAD.match(text)
    if head is None:
        return text.strip(), None, None
    rest, component = text[head.end() :], None
    for step in _LOG_STEPS:
        found = step.match(rest)
        if found is None:
            continue
        rest = rest[found.end() :]
        component = found.groupdict().get("component")
        if component:  # the message starts after the first component
            break
    return rest.strip(), head.group("stamp"), component


def _parameter_name(kind: str, before: str, key: str | None, taken: dict[str, int]) -> str:
    """The key of ``key=value``, else the word just before the value, else its kind."""
    word = _WORD_BEFORE.search(before)
    name = key or (word.group(1) if word and word.group(1).lower() not in _NOT_NAMES else kind)
    name = norm_name(name)
    taken[name] = taken.get(name, 0) + 1
    return name if taken[name] == 1 else f"{name}_{taken[name]}"


def norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "value"


# The log teacher of the request being answered (``--log-teacher``), if any.
LOG_TEACHER: ContextVar[LogTeacher | None] = ContextVar("simulator_log_teacher", default=None)


def log_line(text: str) -> LogLine:
    """The line's template: the teacher's true one when a teacher knows the message,
    else the heuristic one (``heuristic_log_line``)."""
    guess = heuristic_log_line(text)
    teacher = LOG_TEACHER.get()
    taught = None if teacher is None else teacher.teach(text) or teacher.teach(guess.content)
    if taught is None:
        return guess
    names = slot_names(taught.template)
    params = tuple(zip(names, taught.values, strict=False))
    return replace(guess, template=taught.template, parameters=params)


@lru_cache(maxsize=_SEEN_MAX)
def heuristic_log_line(text: str) -> LogLine:
    """The template of a log line (variables written ``<*>``, as log parsers do) with the
    values it replaced, and the header's timestamp and component when there is a header."""
    content, stamp, component = _log_header(text)
    pieces: list[str] = []
    params: list[tuple[str, str]] = []
    taken: dict[str, int] = {}
    last = 0
    for found in _LOG_VARIABLE.finditer(content):
        kind = str(found.lastgroup)
        start, end = found.span()
        key = None
        if kind == "value":  # key=value: the key stays
            key = found.group("key")[:-1]
            start = found.start("value")
        elif kind == "account":
            key, start = "user", found.start("account")
        elif kind in {"quote", "quoted"}:  # 'value': the quotes stay
            start, end = found.span("quoted")
            kind = "quoted"
        before = content[max(0, start - 24) : start]
        params.append((_parameter_name(kind, before, key, taken), content[start:end]))
        pieces.append(content[last:start] + "<*>")
        last = end
    pieces.append(content[last:])
    template = " ".join("".join(pieces).split())
    return LogLine(content, stamp, component, template, tuple(params))


_STAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%a %b %d %H:%M:%S %Y",
    "%y/%m/%d %H:%M:%S",
    "%y%m%d %H%M%S",
    "%Y%m%d-%H:%M:%S.%f",
    "%Y%m%d-%H:%M:%S",
)


def log_time(text: str) -> str | None:
    """The header timestamp of a log line in ISO 8601 when its shape says the year, else
    as written (``Dec 10 06:55:46``); None when the line has no header timestamp."""
    stamp = log_line(text).timestamp
    if stamp is None:
        return None
    plain = " ".join(stamp.replace("T", " ").split())
    plain = re.sub(r"(\d{1,2}:\d{1,2}:\d{1,2})[,:](\d{1,3})$", r"\1.\2", plain)
    zone = re.search(r"(Z|[+-]\d{2}:?\d{2})$", plain)
    if zone:
        plain = plain[: zone.start()]
    for fmt in _STAMP_FORMATS:
        try:
            parsed = datetime.strptime(plain, fmt)
        except ValueError:
            continue
        return parsed.isoformat() + (zone.group(1) if zone else "")
    return stamp
