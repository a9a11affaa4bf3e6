"""The free local tier: VADER for sentiment, alt-profanity-check for moderation.

Both come with the ``local`` extra and load lazily (about a second, once). Without the
extra the loaders return None and handlers send every event to the model. Neither runs
on the event loop: VADER's cost grows with the square of the text (1 KB 4 ms, 100 KB
29 s) and profanity-check costs about 3 ms a call whatever the number of texts, so both
score at most ``MAX_LOCAL_CHARS`` of a text (``bounded``), in batches, in a worker
thread (``ScoreBatcher``).
"""

from __future__ import annotations

import asyncio
import bisect
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Scorer = Callable[[list[str]], Sequence[float]]
# The most of one text a local tier reads: the head and the tail of a long text, where
# reviews and posts state their verdict. Bounds the worst case of quadratic scorers.
MAX_LOCAL_CHARS = 2000
_TAIL_CHARS = 500


def bounded(text: str, limit: int = MAX_LOCAL_CHARS) -> str:
    """At most ``limit`` characters of ``text``: its head and its last ``_TAIL_CHARS``."""
    if len(text) <= limit:
        return text
    tail = min(_TAIL_CHARS, limit // 4)
    return text[: limit - tail - 1] + " " + text[len(text) - tail :]


@cache
def vader() -> Callable[[str], dict[str, float]] | None:
    """VADER's ``polarity_scores`` (neg, neu, pos shares and the compound in [-1, 1])."""
    try:
        from vaderSentiment.vaderSentiment import (  # type: ignore[import-untyped]  # noqa: PLC0415
            SentimentIntensityAnalyzer,
        )
    except ImportError:
        return None
    analyzer: Any = SentimentIntensityAnalyzer()
    scores: Callable[[str], dict[str, float]] = analyzer.polarity_scores
    return scores


def vader_many(texts: list[str]) -> list[dict[str, float]]:
    """VADER's scores of each text, bounded (for a ``ScoreBatcher``; the extra is there)."""
    scores = vader()
    if scores is None:
        raise RuntimeError("vaderSentiment is not installed (the 'local' extra)")
    return [scores(bounded(t)) for t in texts]


@cache
def profanity() -> Scorer | None:
    """alt-profanity-check's ``predict_prob``: the probability each text is offensive."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn may warn about pickled versions
            import profanity_check  # type: ignore[import-untyped]  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - optional extra: missing or broken means no local tier
        return None
    predict: Scorer = profanity_check.predict_prob
    return predict


def calibrated(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear ``x -> precision`` from measured ``(x, precision)`` points."""
    xs = [p[0] for p in points]
    i = bisect.bisect_right(xs, x)
    if i == 0:
        return points[0][1]
    if i == len(points):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class ScoreBatcher(Generic[T]):
    """Scores texts in batches: asks made within ``max_wait_s`` share one call, run in a
    worker thread so the event loop keeps polling Kafka meanwhile. Texts are bounded to
    ``MAX_LOCAL_CHARS`` before they reach the scorer."""

    def __init__(
        self,
        scorer: Callable[[list[str]], Sequence[T]],
        *,
        max_batch: int = 256,
        max_wait_s: float = 0.002,
    ) -> None:
        self.scorer = scorer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._texts: list[str] = []
        self._futures: list[asyncio.Future[T]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def score(self, text: str) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._texts.append(bounded(text))
        self._futures.append(future)
        if len(self._texts) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        texts, futures = self._texts, self._futures
        self._texts, self._futures = [], []
        if texts:
            task = asyncio.create_task(self._run(texts, futures))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, texts: list[str], futures: list[asyncio.Future[T]]) -> None:
        try:
            scores = await asyncio.to_thread(self.scorer, texts)
        except Exception as exc:  # noqa: BLE001 - handed to every asker
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, value in zip(futures, scores, strict=True):
            if not future.done():
                future.set_result(value)
