"""Against the simulator's emulation of llama-cpp-python's server, over real HTTP: no
json_schema (HTTP 500), json_object with a schema, a 4096-token context window, and
max_tokens honoured where max_completion_tokens is ignored. The defaults must answer
events with no setting tuned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
import pytest_asyncio

from stream.config import ModelSettings, Settings
from stream.model.client import ModelClient
from stream.model.errors import (
    ContextExceeded,
    ModelOutputInvalid,
    ModelRequestRejected,
    ModelTimeout,
)
from stream.model.service import ModelService
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings
from tests.simutil import sim_stats
from tests.stream.model.fakes import EVENTS, TASK, Server, answer, completion, good
from tests.stream.model.fakes import client as fake_client

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def llama() -> AsyncIterator[str]:
    settings = SimulatorSettings(port=0, latency_median_ms=2, seed=5, emulate="llama-cpp-python")
    async with running_simulator(settings) as url:
        yield url


def refusal(status: int, message: str) -> httpx2.Response:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return httpx2.Response(status, json=body)


def client(url: str, **settings: Any) -> ModelClient:
    return ModelClient(ModelSettings(api_key="none", base_url=url, model="gemma", **settings))


async def test_auto_finds_json_object_with_schema(
    llama: str, caplog: pytest.LogCaptureFixture
) -> None:
    """json_schema is refused with HTTP 500: the client steps down to json_object with a
    schema by itself, says so once at INFO, and the breaker never hears of it."""
    model = client(llama)
    with caplog.at_level(logging.INFO, logger="stream.model.client"):
        first = await model.ask(TASK, EVENTS)
        second = await model.ask(TASK, [("d", "Awful service"), ("e", "Loved it")])
    assert set(first.outputs) == {"a", "b", "c"}
    assert set(second.outputs) == {"d", "e"}
    assert model.output_mode == "json_object_schema"
    chose = [r for r in caplog.records if "does not accept" in r.getMessage()]
    assert len(chose) == 1
    assert chose[0].levelno == logging.INFO
    assert "json_object with a schema" in chose[0].getMessage()
    assert not model.breaker.is_open
    assert model.requests["error"] == 1  # the one refused json_schema request
    await model.aclose()


async def test_explicit_mode_the_server_refuses_is_a_configuration_fault(llama: str) -> None:
    """output_mode = json_schema on a server without it: one request, then a fatal error
    naming the setting; no retries, no open breaker."""
    model = client(llama, output_mode="json_schema")
    with pytest.raises(ModelRequestRejected) as caught:
        await model.ask(TASK, EVENTS)
    assert caught.value.fatal
    assert 'model.output_mode = "json_schema"' in str(caught.value)
    assert "Input should be 'text' or 'json_object'" in str(caught.value)
    assert (await sim_stats(llama))["requests"] == 1
    assert not model.breaker.is_open
    await model.aclose()


async def test_explicit_json_object_keeps_working(llama: str) -> None:
    """The schema-in-the-prompt mode still answers (and sends no schema key)."""
    model = client(llama, output_mode="json_object")
    answers = await model.ask(TASK, EVENTS)
    assert set(answers.outputs) == {"a", "b", "c"}
    await model.aclose()


def _review(i: int) -> tuple[str, str]:
    return str(i), f"Review {i}: " + "the product arrived late and the box was damaged. " * 24


async def test_batch_over_the_context_window_is_split(llama: str) -> None:
    """Sixteen long reviews (~5000 prompt tokens) do not fit 4096: the window is learned
    from the 400 and the batch is split, every event answered, none dead-lettered."""
    model = client(llama)
    events = [_review(i) for i in range(16)]
    answers = await model.ask(TASK, events)
    assert set(answers.outputs) == {eid for eid, _ in events}
    assert answers.errors == {}
    assert model.context_tokens == 4096
    # Known now: the next big batch is split before sending, with no refusal.
    refused = model.requests["error"]
    again = await model.ask(TASK, [_review(i) for i in range(16, 32)])
    assert len(again.outputs) == 16
    assert model.requests["error"] == refused
    await model.aclose()


async def test_event_that_alone_cannot_fit_goes_to_the_dlq_with_the_reason(llama: str) -> None:
    """In a batch, only the too-long event fails, with a per-event error saying why."""
    model = client(llama)
    huge = ("huge", "word " * 20_000)
    answers = await model.ask(TASK, [*EVENTS, huge])
    assert set(answers.outputs) == {"a", "b", "c"}
    error = answers.errors["huge"]
    assert isinstance(error, ContextExceeded)
    assert "context" in str(error)
    assert "4096" in str(error)
    # Alone, once the window is known: refused before anything is sent.
    sent = (await sim_stats(llama))["requests"]
    with pytest.raises(ContextExceeded, match="does not fit the model's context window"):
        await model.ask(TASK, [huge])
    assert (await sim_stats(llama))["requests"] == sent
    await model.aclose()


async def test_max_tokens_is_sent_to_a_server_that_needs_it(llama: str) -> None:
    """auto sends max_tokens to a non-OpenAI base_url: answers end where they should.
    Without it the emulated server generates to the end of the context window."""
    model = client(llama)
    assert model.send_max_tokens
    answers = await model.ask(TASK, EVENTS)
    assert len(answers.outputs) == 3
    assert answers.usage.completion < 3 * 100
    await model.aclose()

    runaway = client(llama, send_max_tokens=False)
    cut = await runaway.ask(TASK, EVENTS[:1])
    assert isinstance(cut.errors["a"], ModelOutputInvalid)
    assert "cut off" in str(cut.errors["a"])
    assert cut.usage.completion > 3000  # ran on to the end of the window, twice
    await runaway.aclose()


async def test_max_tokens_stays_off_for_the_openai_api() -> None:
    """api.openai.com refuses max_tokens for reasoning models: auto leaves it off there
    (and when base_url is unset); explicit values win."""
    assert not ModelClient(ModelSettings(api_key="k", base_url=None)).send_max_tokens
    openai_url = "https://api.openai.com/v1"
    assert not ModelClient(ModelSettings(api_key="k", base_url=openai_url)).send_max_tokens
    forced = ModelSettings(api_key="k", base_url=openai_url, send_max_tokens=True)
    assert ModelClient(forced).send_max_tokens


async def test_service_with_default_settings_answers_through_the_emulation(llama: str) -> None:
    """The whole model path (batcher included) with default settings except the address,
    model id and its price: sixty concurrent long and short events are all answered."""
    settings = Settings(
        model={"api_key": "none", "base_url": llama, "model": "gemma"},
        budget={"prices": {"gemma": {"input": 0, "cached_input": 0, "output": 0}}},
    )
    service = ModelService(settings)
    texts = [f"review {i}: " + ("so good " * (i % 7) * 40 or "fine") for i in range(60)]
    replies = await asyncio.gather(*(service.ask(TASK, t, route="r") for t in texts))
    assert all(r.source == "model" for r in replies)
    assert service.client.output_mode == "json_object_schema"
    await service.aclose()


async def test_auto_steps_down_to_the_schema_in_the_prompt_then_gives_up() -> None:
    """A server that also refuses a schema key gets plain json_object with the schema in
    the prompt; one that refuses every mode is a configuration fault naming the modes."""

    def no_schema_key(body: dict[str, Any], n: int) -> httpx2.Response:
        fmt = body.get("response_format", {})
        if fmt.get("type") != "json_object" or "schema" in fmt:
            return refusal(400, "response_format: only {'type': 'json_object'} is supported")
        return completion(answer(good("a")))

    server = Server(no_schema_key)
    model = fake_client(server)
    answers = await model.ask(TASK, EVENTS[:1])
    assert set(answers.outputs) == {"a"}
    assert [r["response_format"]["type"] for r in server.requests] == [
        "json_schema", "json_object", "json_object"]  # fmt: skip
    assert "follow this JSON schema" in server.requests[-1]["messages"][0]["content"]
    assert model.output_mode == "json_object"

    nothing = Server(lambda body, n: refusal(422, "response_format is not supported"))
    model = fake_client(nothing)
    with pytest.raises(ModelRequestRejected, match="accepts none of the output modes"):
        await model.ask(TASK, EVENTS[:1])
    assert len(nothing.requests) == 3
    assert not model.breaker.is_open


async def test_a_body_validation_500_is_a_configuration_fault_not_an_outage() -> None:
    """A pydantic-validating server answers a bad body with HTTP 500: fatal at once, no
    retries, the breaker closed."""
    invalid = "1 validation error for Request\nmessages.0.role\n  Input should be 'user'"
    server = Server(lambda body, n: refusal(500, invalid))
    model = fake_client(server)
    with pytest.raises(ModelRequestRejected, match="malformed") as caught:
        await model.ask(TASK, EVENTS[:1])
    assert caught.value.fatal
    assert len(server.requests) == 1
    assert not model.breaker.is_open


async def test_a_refused_max_tokens_is_sent_no_more() -> None:
    """A proxy to the OpenAI API on another host refuses max_tokens for a reasoning
    model: auto drops it after the first refusal and the request goes through."""

    def openai_like(body: dict[str, Any], n: int) -> httpx2.Response:
        if "max_tokens" in body:
            message = ("Unsupported parameter: 'max_tokens' is not supported with this "
                       "model. Use 'max_completion_tokens' instead.")  # fmt: skip
            error = {"message": message, "type": "invalid_request_error",
                     "param": "max_tokens", "code": "unsupported_parameter"}  # fmt: skip
            return httpx2.Response(400, json={"error": error})
        return completion(answer(good("a")))

    server = Server(openai_like)
    model = fake_client(server)
    assert model.send_max_tokens
    answers = await model.ask(TASK, EVENTS[:1])
    assert set(answers.outputs) == {"a"}
    assert not model.send_max_tokens
    assert ["max_tokens" in r for r in server.requests] == [True, False]
    assert not model.breaker.is_open

    forced = fake_client(Server(openai_like), send_max_tokens=True)
    with pytest.raises(ModelRequestRejected, match=r"model\.send_max_tokens"):
        await forced.ask(TASK, EVENTS[:1])


async def test_a_server_slower_than_the_timeout_gets_a_longer_one() -> None:
    """A local model on a CPU takes longer than model.timeout_s for every answer: each
    timeout at an endpoint that answered the probe doubles the wait (said at WARNING),
    up to MAX_TIMEOUT_GROWTH times model.timeout_s, so the answers come instead of
    timeouts without end."""
    slow = SimulatorSettings(port=0, latency_median_ms=1200, latency_sigma=0, seed=5,
                             emulate="llama-cpp-python")  # fmt: skip
    async with running_simulator(slow) as url:
        model = client(url, timeout_s=0.4)
        await model.probe()
        answers = await model.ask(TASK, EVENTS)
        assert set(answers.outputs) == {"a", "b", "c"}
        assert model.timeout_s == pytest.approx(1.6)
        await model.aclose()


async def test_the_timeout_does_not_grow_at_an_endpoint_that_never_answered() -> None:
    """Before the probe or any answer, a timeout may be an endpoint that is down: the
    wait stays model.timeout_s."""
    slow = SimulatorSettings(port=0, latency_median_ms=1000, latency_sigma=0, seed=5,
                             emulate="llama-cpp-python")  # fmt: skip
    async with running_simulator(slow) as url:
        model = client(url, timeout_s=0.2, max_attempts=2)
        with pytest.raises(ModelTimeout):
            await model.ask(TASK, EVENTS[:1])
        assert model.timeout_s == pytest.approx(0.2)
        await model.aclose()


async def test_a_lone_event_answer_with_a_miscopied_id_is_kept() -> None:
    """A small model often gives the one item of a one-event answer an empty or wrong
    id (Gemma 3 270M through llama-cpp-python does): the item is that event's answer."""

    def wrong_ids(body: dict[str, Any], n: int) -> httpx2.Response:
        return completion(answer({**good("a"), "id": ""}) if n == 0 else answer(good("x")))

    server = Server(wrong_ids)
    model = fake_client(server)
    first = await model.ask(TASK, [("e1", "Loved it")])
    second = await model.ask(TASK, [("e2", "Loved it too")])
    assert set(first.outputs) == {"e1"}
    assert set(second.outputs) == {"e2"}
    assert len(server.requests) == 2  # no repair was needed


async def test_in_a_batch_an_unknown_id_is_still_no_answer() -> None:
    """With two or more events an id is the only way to match an item: a wrong one
    answers nothing and its event is asked again alone."""

    def batch_then_lone(body: dict[str, Any], n: int) -> httpx2.Response:
        if n == 0:
            return completion(answer(good("a"), {**good("b"), "id": "zz"}))
        return completion(answer(good("b")))

    server = Server(batch_then_lone)
    answers = await fake_client(server).ask(TASK, [("a", "Nice"), ("b", "Fine")])
    assert set(answers.outputs) == {"a", "b"}
    assert len(server.requests) == 2
