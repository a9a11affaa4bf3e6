"""The local tiers never hold the event loop: they read a bounded part of a text, score
it in a worker thread, and score each event once (issue 12, defect 10)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import orjson
import pytest

from handlers import local
from handlers.base import Handler, HandlerContext, Result
from handlers.registry import HANDLERS
from schemas.records import SourceRecord
from stream.model.service import ModelService

# ~100 KB of review: VADER on the whole of it costs about 29 s (quadratic).
LONG = ("The room was great and the staff friendly, but breakfast was awful. " * 1500)[:100_000]


def _record(text: str, offset: int = 0) -> SourceRecord:
    return SourceRecord("reviews", 0, offset, b"k", orjson.dumps({"text": text}))


async def _handle_while_ticking(handler: Handler, record: SourceRecord) -> tuple[Result, int]:
    """Handle ``record`` as the runtime does while a task ticks on the same loop;
    returns the result and how many ticks got through meanwhile."""
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    try:
        result = handler.try_now(record) if handler.answers_now else None
        if result is None:
            result = await handler.handle(record)
    finally:
        done.set()
        await ticker
    return result, ticks - before


def test_bounded_keeps_head_and_tail_within_the_limit() -> None:
    """A long text is cut to the limit, keeping its start and its end."""
    text = "A" * 5000 + "the end"
    cut = local.bounded(text)
    assert len(cut) <= local.MAX_LOCAL_CHARS
    assert cut.startswith("AAAA")
    assert cut.endswith("the end")
    assert local.bounded("short") == "short"


@pytest.mark.asyncio
@pytest.mark.parametrize("name", ["sentiment", "moderation"])
async def test_a_100kb_text_does_not_block_the_loop(name: str, model: ModelService) -> None:
    """While a 100 KB event is handled, other tasks on the loop keep running."""
    handler = HANDLERS[name].from_options({}, HandlerContext("r", model))
    assert not handler.answers_now  # nothing is scored inline by try_now
    result, ticks = await _handle_while_ticking(handler, _record(LONG))
    assert result.value is not None
    assert ticks > 0


@pytest.mark.asyncio
async def test_sentiment_scores_each_event_once_off_the_loop(model: ModelService) -> None:
    """An event that goes on to the model is scored once, in another thread, bounded."""
    options = {"static_tier": True}  # VADER answers alone only when asked to
    handler = HANDLERS["sentiment"].from_options(options, HandlerContext("r", model))
    seen: list[tuple[int, int]] = []  # (thread id, text length) per scored text
    batcher = getattr(handler, "_vader", None)
    assert isinstance(batcher, local.ScoreBatcher)
    inner: Callable[[list[str]], Sequence[object]] = batcher.scorer

    def recording(texts: list[str]) -> Sequence[object]:
        seen.extend((threading.get_ident(), len(t)) for t in texts)
        return inner(texts)

    batcher.scorer = recording
    await _handle_while_ticking(handler, _record("It was fine, I guess. Nothing special."))
    await _handle_while_ticking(handler, _record(LONG, 1))
    assert len(seen) == 2
    assert all(thread != threading.get_ident() for thread, _ in seen)
    assert max(size for _, size in seen) <= local.MAX_LOCAL_CHARS
