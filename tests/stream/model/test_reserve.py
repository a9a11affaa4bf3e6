"""The completion reservation follows the answers seen, and a cut-off answer resets it."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from stream.model.reserve import FLOOR, MIN_SAMPLES, CompletionReserve
from tests.stream.model.fakes import EVENTS, TASK, Server, answer, client, completion, good


def test_the_reservation_is_a_high_percentile_with_a_floor() -> None:
    """Configured maximum until enough answers are seen; then the 99th percentile with a
    margin, never below the floor nor above the maximum; other batch sizes scale."""
    reserve = CompletionReserve(1024)
    assert reserve.limit("t", 12) == 1024
    for i in range(MIN_SAMPLES):
        reserve.observe("t", 12, 300 + i)
    assert reserve.limit("t", 12) == pytest.approx(319 * 1.25, abs=1)
    assert 319 < reserve.limit("t", 16) <= 1024  # from the per-item size
    assert reserve.limit("t", 1) == FLOOR
    assert reserve.limit("other", 12) == 1024
    reserve.cut_off("t")
    assert reserve.limit("t", 12) == 1024


@pytest.mark.asyncio
async def test_requests_reserve_what_their_answers_need() -> None:
    """After enough answers of ~50 tokens, requests ask for far less than 1,024; a batch
    whose answer is cut off before any item is finished is asked again in halves, and the
    next request reserves 1,024 again."""
    cut = {MIN_SAMPLES + 1}

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        eids = server.events(n)
        if n in cut:
            return completion('{"results": [{"id": "a", "lab', finish="length",
                              usage=(100, body["max_completion_tokens"], 0))  # fmt: skip
        return completion(answer(*(good(e) for e in eids)), usage=(100, 50, 0))

    server = Server(reply)
    model = client(server)
    for _ in range(MIN_SAMPLES + 1):
        await model.ask(TASK, EVENTS)
    sent = [r["max_completion_tokens"] for r in server.requests]
    assert sent[0] == 1024
    assert sent[MIN_SAMPLES] == FLOOR  # 50 tokens * 1.25 is below the floor
    answers = await model.ask(TASK, EVENTS)  # cut off: asked again in halves
    assert set(answers.outputs) == {"a", "b", "c"}
    assert [len(server.events(n)) for n in range(MIN_SAMPLES + 1, len(server.requests))] == [
        3, 1, 2]  # fmt: skip
    assert server.requests[MIN_SAMPLES + 2]["max_completion_tokens"] == 1024
    await model.ask(TASK, EVENTS)
    assert server.requests[-1]["max_completion_tokens"] == 1024
