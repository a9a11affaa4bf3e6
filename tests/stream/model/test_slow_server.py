"""A slow, weak, one-request-at-a-time server (a small model on a CPU, as llama.cpp's):
batches pinned to their events by the schema, cut-off answers kept as far as they go,
timed-out batches split rather than sent whole again, batches sized by the endpoint's
speed. Over a fake transport and real HTTP through the SDK."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import pytest

from stream.config import ModelSettings
from stream.model.client import ModelClient, strict_schema
from stream.model.prompt import parse_events
from tests.stream.model.fakes import EVENTS, TASK, Server, answer, client, completion, good

pytestmark = pytest.mark.asyncio


def ok(body: dict[str, Any], n: int) -> httpx2.Response:
    eids = [eid for eid, _ in parse_events(body["messages"][1]["content"])]
    return completion(answer(*(good(e) for e in eids)))


async def test_json_object_schema_pins_the_batch_to_its_events() -> None:
    """With json_object and a schema (a server that makes it a grammar), the schema of a
    request allows exactly its events: as many items, each id one of those asked, the
    id first. json_schema (the OpenAI API) keeps the one schema of the task."""
    server = Server(ok)
    await client(server, output_mode="json_object_schema").ask(TASK, EVENTS)
    schema = server.requests[0]["response_format"]["schema"]
    results = schema["properties"]["results"]
    assert (results["minItems"], results["maxItems"]) == (3, 3)
    assert results["items"]["properties"]["id"]["enum"] == ["a", "b", "c"]
    assert next(iter(results["items"]["properties"])) == "id"
    assert results["items"]["required"][0] == "id"

    strict = Server(ok)
    await client(strict, output_mode="json_schema").ask(TASK, EVENTS)
    sent = strict.requests[0]["response_format"]["json_schema"]["schema"]
    assert sent == json.loads(json.dumps(strict_schema(TASK.output)))


async def test_a_cut_off_batch_keeps_its_finished_items() -> None:
    """An answer that ran out of tokens after two whole items: those two are answers,
    only the third event is asked again."""

    def cut_then_ok(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 0:
            content = answer(good("a"), good("b"))[:-2] + ', {"id": "c", "lab'
            return completion(content, finish="length")
        return ok(body, n)

    server = Server(cut_then_ok)
    answers = await client(server).ask(TASK, EVENTS)
    assert set(answers.outputs) == {"a", "b", "c"}
    assert len(server.requests) == 2
    assert server.events(1) == ["c"]


async def test_a_timed_out_batch_is_split_not_sent_whole_again() -> None:
    """A server that cannot answer more than one event within the timeout: the batch is
    sent whole once, then in halves, and every event is answered."""
    sent: list[list[str]] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        eids = [eid for eid, _ in parse_events(body["messages"][1]["content"])]
        sent.append(eids)
        if len(eids) > 1:
            raise httpx2.ReadTimeout("too slow", request=request)
        return completion(answer(*(good(e) for e in eids)))

    config = ModelSettings(api_key="sk-test", base_url="http://sim.test/v1", timeout_s=5)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    model = ModelClient(config, http_client=http)
    answers = await model.ask(TASK, EVENTS)
    assert set(answers.outputs) == {"a", "b", "c"}
    assert sent.count(["a", "b", "c"]) == 1
    assert sent.count(["b", "c"]) == 1
    assert sorted(e for eids in sent if len(eids) == 1 for e in eids) == ["a", "b", "c"]


async def test_batches_are_sized_by_the_endpoint_speed() -> None:
    """An endpoint that takes 0.1 s per event, with a 1 s timeout: once an answer was
    timed, a batch carries no more events than it answers within 75% of the timeout. A
    fast endpoint keeps the configured batch size."""
    sent: list[int] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        eids = [eid for eid, _ in parse_events(body["messages"][1]["content"])]
        sent.append(len(eids))
        await asyncio.sleep(0.1 * len(eids))
        return completion(answer(*(good(e) for e in eids)))

    config = ModelSettings(api_key="sk-test", base_url="http://sim.test/v1", timeout_s=1)
    model = ModelClient(
        config, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    )
    assert model.batch_limit(TASK) == config.batch_max_events  # nothing known yet
    await model.ask(TASK, EVENTS)
    limit = model.batch_limit(TASK)
    assert limit <= 7  # 0.75 s / 0.1 s per event (fewer if the machine is slower)
    many = [(str(i), f"review {i}") for i in range(16)]
    answers = await model.ask(TASK, many)
    assert set(answers.outputs) == {eid for eid, _ in many}
    assert max(sent[1:]) <= limit

    fast = Server(ok)
    quick = client(fast)
    await quick.ask(TASK, EVENTS)
    assert quick.batch_limit(TASK) == quick.settings.batch_max_events


async def test_a_bounded_number_is_a_list_of_values_in_a_pinned_schema() -> None:
    """A grammar made from the schema enforces no bounds on a number: the pinned schema
    lists the values of a 0..1 confidence instead, so 1.2 cannot be written."""
    from handlers.sentiment import TASK as SENTIMENT  # noqa: PLC0415 - one test's task
    from stream.model.client import pinned_schema  # noqa: PLC0415 - one test's helper

    item = pinned_schema(SENTIMENT.output, ["a"])["properties"]["results"]["items"]
    confidence = item["properties"]["confidence"]
    assert confidence["enum"][0] == 0
    assert confidence["enum"][-1] == 1
    assert 0.93 in confidence["enum"]
    assert "maximum" not in confidence


async def test_waiters_of_the_task_last_sent_go_first_a_bounded_number_of_times() -> None:
    """One slot: after a call of task "a", a waiting "a" goes ahead of an older "b"
    (a server keeping the prompt it last read reads it once), but no more than
    ``affinity`` times in a row."""
    from stream.model.concurrency import AimdLimit  # noqa: PLC0415 - one test's helper

    limit = AimdLimit(floor=1, ceiling=1, initial=1, affinity=1)
    await limit.acquire("a")
    order: list[str] = []

    async def call(key: str) -> None:
        await limit.acquire(key)
        order.append(key)

    waiting = [asyncio.create_task(call(k)) for k in ("b", "a", "a")]
    await asyncio.sleep(0)
    for _ in waiting:
        limit.release()
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    limit.release()
    assert order == ["a", "b", "a"]


async def test_batches_are_bounded_after_a_timeout_among_others_in_flight() -> None:
    """A server that cannot answer more than two events in time (0.25 s an event, a 1 s
    timeout, and more than two time out), asked by several
    batchers at once (no request is timed alone, so no speed is learned): after the
    timeouts, a later batch is not sent whole again, only in parts the server answers
    (it computes a request the client gave up on to the end: each is wasted)."""
    sent: list[int] = []

    async def handler(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        eids = [eid for eid, _ in parse_events(body["messages"][1]["content"])]
        sent.append(len(eids))
        if len(eids) > 2:
            await asyncio.sleep(0.05)
            raise httpx2.ReadTimeout("too slow", request=request)
        await asyncio.sleep(0.25 * len(eids))  # two take 0.5 s of the 1 s timeout
        return completion(answer(*(good(e) for e in eids)))

    config = ModelSettings(
        api_key="sk-test", base_url="http://sim.test/v1", timeout_s=1, breaker_threshold=100
    )
    model = ModelClient(
        config, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    )
    first = [[(f"{k}{i}", f"review {k}{i}") for i in range(16)] for k in "abc"]
    done = await asyncio.gather(*(model.ask(TASK, events) for events in first))
    assert all(set(d.outputs) == {eid for eid, _ in e} for d, e in zip(done, first, strict=True))
    assert model.batch_limit(TASK) <= 4
    sent.clear()
    later = [(f"z{i}", f"review z{i}") for i in range(16)]
    answers = await model.ask(TASK, later)
    assert set(answers.outputs) == {eid for eid, _ in later}
    assert sum(1 for n in sent if n > 2) <= 1, sent  # one probe of a bigger size at most


async def test_a_timeout_bounds_batches_even_when_nothing_was_timed_alone() -> None:
    """The bound a timeout sets does not wait for a request timed alone (at a busy start
    there is none): half the size that timed out, doubled again only by answers that
    would still be in time at twice their time, and gone at the configured size."""
    model = client(Server(ok))
    most = model.settings.batch_max_events
    room = 0.75 * model.settings.timeout_s
    model._capped(TASK, most, None)
    assert model.batch_limit(TASK) == most // 2
    model._capped(TASK, most // 2, None)
    assert model.batch_limit(TASK) == most // 4
    model._capped(TASK, most // 4, room * 0.6)  # twice that is over the room
    assert model.batch_limit(TASK) == most // 4
    model._capped(TASK, most // 4, room * 0.1)
    assert model.batch_limit(TASK) == most // 2
    model._capped(TASK, most // 2, room * 0.1)
    assert model.batch_limit(TASK) == most
    assert not model.batch_cap
