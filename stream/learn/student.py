"""A student per route: online linear models trained on the model's answers.

Features need no downloaded weights: hashed word 1-2-grams and character 3-4-grams of
the text (``HashingVectorizer``, stateless, so a student never has to see a vocabulary
first). Each field the student can fill has its own ``SGDClassifier(loss="log_loss")``
updated with ``partial_fit``:

- an enum field (sentiment, intent, action, any ``Literal``/enum field of a task): one
  multi-class model over the enum's values;
- a field holding a mapping of scores in [0, 1] (moderation's ``categories`` and the
  route's ``policy``): one binary model per key, "score >= 0.5", whose probability
  becomes the key's score;
- ``confidence``: the student's own calibrated confidence.

Any other field (free text such as ``phrases`` or ``reason``) cannot be filled: unless
the route lets it be empty for local answers (``may_omit``), the student never answers.
The student's confidence in a whole answer is the least confident of its fields. A field
in ``may_omit`` (even an enum) is neither learned nor compared: local answers leave it
empty.

Everything here is CPU work and runs in a worker thread (``stream.learn.tier``).
"""

from __future__ import annotations

import enum
import threading
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel
from scipy.special import expit
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier

# The most of a text the student reads (head and tail, as the local tiers): its words in
# MAX_CHARS, its character n-grams (costlier to hash) in CHAR_CHARS.
MAX_CHARS = 2000
CHAR_CHARS = 400
N_FEATURES = 2**17  # per half: words, characters
CONFIDENCE = "confidence"


def bounded(text: str, limit: int = MAX_CHARS) -> str:
    """At most ``limit`` characters: the head and the last quarter."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    return text[: limit - tail - 1] + " " + text[-tail:]


_WORDS = HashingVectorizer(
    analyzer="word", ngram_range=(1, 2), n_features=N_FEATURES, alternate_sign=False,
    norm="l2", lowercase=True, token_pattern=r"(?u)\b\w+\b|[!?]",  # noqa: S106 - a regex
)  # fmt: skip
_CHARS = HashingVectorizer(
    analyzer="char_wb", ngram_range=(3, 4), n_features=N_FEATURES, alternate_sign=False,
    norm="l2", lowercase=True,
)  # fmt: skip


def features(texts: Sequence[str]) -> sp.csr_matrix:
    """Hashed word and character n-grams, one row per text (each half l2-normed)."""
    words = _WORDS.transform([bounded(t) for t in texts])
    chars = _CHARS.transform([bounded(t, CHAR_CHARS) for t in texts])
    return sp.hstack([words, chars], format="csr")


def enum_fields(output: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """The fields of a model's answer that take one of a fixed set of string values."""
    found: dict[str, tuple[str, ...]] = {}
    for name, info in output.model_fields.items():
        values = _enum_values(info.annotation)
        if values:
            found[name] = values
    return found


def _enum_values(annotation: Any) -> tuple[str, ...]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(str(m.value) for m in annotation)
    if typing.get_origin(annotation) is typing.Literal:
        args = typing.get_args(annotation)
        if args and all(isinstance(a, str) for a in args):
            return tuple(args)
    return ()


def new_model() -> SGDClassifier:
    return SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0)


@dataclass(frozen=True)
class Guess:
    """The student's answer for one text: the fields it can fill and how sure it is of
    the least sure of them (None: some field cannot be filled, or nothing is learned)."""

    fields: dict[str, Any]
    confidence: float | None


class Student:
    """The fields of one route's answer, learned online. Thread-safe (one lock)."""

    def __init__(
        self,
        enums: Mapping[str, Sequence[str]],
        *,
        may_omit: Sequence[str] = (),
        min_trained: int = 20,
    ) -> None:
        self.may_omit = frozenset(may_omit)
        # An enum field the route lets local answers leave empty is not learned at all.
        self.enums = {k: tuple(v) for k, v in enums.items() if k not in self.may_omit}
        self.min_trained = min_trained
        self.trained = 0  # answers learned from
        self._lock = threading.Lock()
        self._enum_models = {name: new_model() for name in self.enums}
        self._score_models: dict[tuple[str, str], SGDClassifier] = {}
        self._score_seen: dict[tuple[str, str], int] = {}
        self._shape: dict[str, str] | None = None  # field -> enum | scores | confidence | other
        self._blocked: frozenset[str] = frozenset()  # fields it can neither fill nor omit
        # model id -> (model, answers learned when laid out, coef.T, intercept)
        self._laid_out: dict[int, tuple[SGDClassifier, int, np.ndarray, np.ndarray]] = {}

    # -- learning -------------------------------------------------------------------------

    def learn(self, rows: sp.csr_matrix, answers: Sequence[Mapping[str, Any]]) -> None:
        """One ``partial_fit`` per field model over a batch of the model's answers.
        (Replaying earlier answers, or more passes, made the student surer of itself
        without making it right more often: fewer events cleared the threshold.)"""
        if not answers:
            return
        with self._lock:
            if self._shape is None:
                self._shape = self._shape_of(answers[0])
                self._blocked = frozenset(
                    f
                    for f, kind in self._shape.items()
                    if kind == "other" and f not in self.may_omit
                )
            n = len(answers)
            self._fit(rows, answers)
            for name, kind in self._shape.items():
                if kind == "scores":
                    for answer in answers:
                        value = answer.get(name)
                        for key in value if isinstance(value, Mapping) else ():
                            self._score_seen[name, key] = self._score_seen.get((name, key), 0) + 1
            self.trained += n

    def _fit(self, rows: sp.csr_matrix, answers: Sequence[Mapping[str, Any]]) -> None:
        """One ``partial_fit`` per field model (the lock is held)."""
        if self._shape is not None:
            for name, model in self._enum_models.items():
                pairs = [
                    (i, a[name]) for i, a in enumerate(answers) if a.get(name) in self.enums[name]
                ]
                if pairs:
                    idx = [i for i, _ in pairs]
                    y = np.array([v for _, v in pairs])
                    model.partial_fit(rows[idx], y, classes=np.array(self.enums[name]))
            for name, kind in self._shape.items():
                if kind != "scores":
                    continue
                keys = {k for a in answers for k in (a.get(name) or {})}
                for key in keys:
                    pairs = [
                        (i, float(a[name][key]) >= 0.5)
                        for i, a in enumerate(answers)
                        if isinstance(a.get(name), Mapping) and key in a[name]
                    ]
                    if not pairs:
                        continue
                    model = self._score_models.setdefault((name, key), new_model())
                    idx = [i for i, _ in pairs]
                    y = np.array([int(v) for _, v in pairs])
                    model.partial_fit(rows[idx], y, classes=np.array([0, 1]))

    def _shape_of(self, answer: Mapping[str, Any]) -> dict[str, str]:
        shape = {}
        for name, value in answer.items():
            if name in self.enums:
                shape[name] = "enum"
            elif name == CONFIDENCE:
                shape[name] = "confidence"
            elif (
                isinstance(value, Mapping)
                and value
                and all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
                )
            ):
                shape[name] = "scores"
            else:
                shape[name] = "other"
        return shape

    # -- snapshots (stream.learn.snapshot) ------------------------------------------------

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    @property
    def enum_models(self) -> Mapping[str, SGDClassifier]:
        return self._enum_models

    @property
    def score_models(self) -> Mapping[tuple[str, str], SGDClassifier]:
        return self._score_models

    @property
    def score_seen(self) -> Mapping[tuple[str, str], int]:
        return self._score_seen

    def load(
        self,
        enum_models: Mapping[str, SGDClassifier],
        score_models: Mapping[tuple[str, str], SGDClassifier],
        score_seen: Mapping[tuple[str, str], int],
        shape: Mapping[str, str] | None,
        trained: int,
    ) -> None:
        """Take over learned models (from a snapshot): they replace the untrained ones."""
        with self._lock:
            for name, model in enum_models.items():
                if name in self._enum_models:
                    self._enum_models[name] = model
            self._score_models = dict(score_models)
            self._score_seen = dict(score_seen)
            if shape is not None:
                self._shape = dict(shape)
                self._blocked = frozenset(
                    f for f, kind in self._shape.items()
                    if kind == "other" and f not in self.may_omit
                )  # fmt: skip
            self.trained = trained

    # -- answering ------------------------------------------------------------------------

    @property
    def shape(self) -> dict[str, str]:
        """Each answer field and what the student does with it (empty until it learns)."""
        return dict(self._shape or {})

    def _proba(self, model: SGDClassifier, rows: sp.csr_matrix) -> np.ndarray:
        """``model.predict_proba(rows)`` for log-loss SGD (one-vs-rest, normalised), from
        weights laid out once per training batch (the lock is held)."""
        cached = self._laid_out.get(id(model))
        if cached is None or cached[0] is not model or cached[1] != self.trained:
            self._laid_out[id(model)] = (model, self.trained, *_weights(model))
            cached = self._laid_out[id(model)]
        _, _, coef_t, intercept = cached
        scores = np.asarray(rows @ coef_t) + intercept
        prob = expit(scores)
        if prob.shape[1] == 1:
            return np.hstack([1 - prob, prob])
        total = prob.sum(axis=1, keepdims=True)
        total[total == 0] = 1.0
        return np.asarray(prob / total)

    @property
    def ready(self) -> bool:
        return self._shape is not None and self.trained >= self.min_trained

    def guess(self, rows: sp.csr_matrix) -> list[Guess]:
        """The student's answer for each row; confidence None when it cannot answer."""
        n = rows.shape[0]
        with self._lock:
            shape = self._shape
            if shape is None or not self.ready:
                return [Guess({}, None)] * n
            blocked = bool(self._blocked)
            fields: list[dict[str, Any]] = [{} for _ in range(n)]
            least = np.ones(n)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name, kind in shape.items():
                    if kind == "enum":
                        model = self._enum_models[name]
                        if not hasattr(model, "classes_"):
                            blocked = True
                            continue
                        probs = self._proba(model, rows)
                        best = probs.argmax(axis=1)
                        least = np.minimum(least, probs[np.arange(n), best])
                        for i in range(n):
                            fields[i][name] = str(model.classes_[best[i]])
                    elif kind == "scores":
                        keys = [k for (f, k) in self._score_models if f == name]
                        if not keys or any(
                            self._score_seen[name, k] < self.min_trained for k in keys
                        ):
                            blocked = True  # a key it has not learned enough of
                            continue
                        for key in keys:
                            p = self._proba(self._score_models[name, key], rows)[:, 1]
                            least = np.minimum(least, np.maximum(p, 1 - p))
                            for i in range(n):
                                fields[i].setdefault(name, {})[key] = round(float(p[i]), 4)
                    elif kind == "other":
                        for i in range(n):
                            fields[i][name] = None
        if blocked:
            return [Guess(f, None) for f in fields]
        return [Guess(f, float(c)) for f, c in zip(fields, least, strict=True)]


def _weights(model: SGDClassifier) -> tuple[np.ndarray, np.ndarray]:
    """A model's weights laid out for ``rows @ weights``: scikit-learn's predict_proba
    copies the transposed coefficients on every call (about 1.5 ms for 4 classes of
    2 * 2**17 weights), most of the cost of scoring one event."""
    return np.ascontiguousarray(model.coef_.T), np.asarray(model.intercept_)


def agrees(guess: Mapping[str, Any], answer: Mapping[str, Any], fields: Sequence[str]) -> bool:
    """Whether the student's guess says what the model said on every field it fills:
    the same enum value, and each score on the same side of 0.5."""
    for name in fields:
        mine, theirs = guess.get(name), answer.get(name)
        if isinstance(mine, Mapping):
            if not isinstance(theirs, Mapping):
                return False
            for key, p in mine.items():
                if key in theirs and (float(p) >= 0.5) != (float(theirs[key]) >= 0.5):
                    return False
        elif mine is not None and mine != theirs:
            return False
    return True
