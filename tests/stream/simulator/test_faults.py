"""Injected faults, forced per request with `x-sim-fault`, seen through the real SDK."""

from __future__ import annotations

import json
from typing import Literal

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.chat.completion_create_params import ResponseFormat
from pydantic import BaseModel

from stream.model.prompt import format_events
from stream.simulator.server import running_simulator
from tests.stream.simulator.conftest import FAST, sdk

pytestmark = pytest.mark.asyncio
MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Label the event."},
    {"role": "user", "content": format_events([("e1", "I love it, fantastic")])},
]
LABELS = ["positive", "negative", "neutral"]


class Label(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    note: str


def _format() -> ResponseFormat:
    schema = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": LABELS},
            "note": {"type": "string"},
        },
        "required": ["label", "note"],
        "additionalProperties": False,
    }
    return {
        "type": "json_schema",
        "json_schema": {"name": "Label", "strict": True, "schema": schema},
    }


async def _create(client: AsyncOpenAI, fault: str | None) -> ChatCompletion:
    return await client.chat.completions.create(
        model="gpt-5.4-nano",
        messages=MESSAGES,
        response_format=_format(),
        extra_headers={"x-sim-fault": fault} if fault else None,
    )


@pytest.mark.parametrize(("fault", "status"), [("error_500", 500), ("error_503", 503)])
async def test_server_errors(client: AsyncOpenAI, fault: str, status: int) -> None:
    """error_500 / error_503 raise the SDK's InternalServerError with a server_error body."""
    with pytest.raises(openai.InternalServerError) as raised:
        await _create(client, fault)
    assert raised.value.status_code == status
    assert raised.value.type == "server_error"


async def test_invalid_json(client: AsyncOpenAI) -> None:
    """invalid_json: finish_reason stop, but the content is not JSON."""
    completion = await _create(client, "invalid_json")
    assert completion.choices[0].finish_reason == "stop"
    with pytest.raises(json.JSONDecodeError):
        json.loads(completion.choices[0].message.content or "")


async def test_truncated(client: AsyncOpenAI) -> None:
    """truncated: the content is cut and finish_reason is `length` (parse() refuses it)."""
    completion = await _create(client, "truncated")
    assert completion.choices[0].finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(completion.choices[0].message.content or "")
    with pytest.raises(openai.LengthFinishReasonError):
        await client.chat.completions.parse(
            model="gpt-5.4-nano",
            messages=MESSAGES,
            response_format=Label,
            extra_headers={"x-sim-fault": "truncated"},
        )


async def test_wrong_enum(client: AsyncOpenAI) -> None:
    """wrong_enum: valid JSON whose enum field holds a value outside the enum."""
    completion = await _create(client, "wrong_enum")
    answer = json.loads(completion.choices[0].message.content or "")
    assert answer["label"] not in LABELS
    assert set(answer) == {"label", "note"}


async def test_refusal(client: AsyncOpenAI) -> None:
    """refusal: message.refusal is set and the content is null."""
    completion = await _create(client, "refusal")
    message = completion.choices[0].message
    assert message.refusal == "I can't help with that."
    assert message.content is None


async def test_forced_rate_limit(client: AsyncOpenAI) -> None:
    """rate_limit: a 429 with retry-after, whatever the budget."""
    with pytest.raises(openai.RateLimitError) as raised:
        await _create(client, "rate_limit")
    assert raised.value.response.headers["retry-after"] == "1"


async def test_hang_outlasts_the_client_timeout() -> None:
    """hang: the answer takes hang_s, so the client's own timeout fires first."""
    async with (
        running_simulator(FAST.updated({"hang_s": 30.0})) as url,
        sdk(url, timeout=0.3) as client,
    ):
        with pytest.raises(openai.APITimeoutError):
            await _create(client, "hang")


async def test_unknown_fault_is_a_400(client: AsyncOpenAI) -> None:
    """An unknown x-sim-fault value is refused, naming the accepted kinds."""
    with pytest.raises(openai.BadRequestError) as raised:
        await _create(client, "meteor")
    assert "refusal" in raised.value.message


async def test_outage_switched_on_and_off_at_run_time(sim_url: str) -> None:
    """POST /sim/config error_503=1.0 fails every request; setting it back to 0 heals it."""
    admin = sim_url.removesuffix("/v1") + "/sim/config"
    async with aiohttp.ClientSession() as http, sdk(sim_url) as client:
        async with http.post(admin, json={"error_503": 1.0}) as response:
            assert response.status == 200
            assert (await response.json())["error_503"] == 1.0
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await _create(client, None)
        async with http.post(admin, json={"error_503": 0.0}) as response:
            assert response.status == 200
        completion = await _create(client, None)
        assert completion.choices[0].finish_reason == "stop"


async def test_bad_config_change_names_the_key(sim_url: str) -> None:
    """/sim/config refuses an out-of-range rate or a start-up-only key with a 400."""
    admin = sim_url.removesuffix("/v1") + "/sim/config"
    async with aiohttp.ClientSession() as http:
        async with http.post(admin, json={"refusal": 2}) as response:
            assert response.status == 400
            assert "refusal" in (await response.json())["error"]["message"]
        async with http.post(admin, json={"port": 1}) as response:
            assert response.status == 400
            assert "port" in (await response.json())["error"]["message"]


async def test_hang_answers_after_hang_s() -> None:
    """hang: a client that waits longer than hang_s gets a normal answer in the end."""
    async with running_simulator(FAST.updated({"hang_s": 0.2})) as url, sdk(url) as client:
        completion = await _create(client, "hang")
    assert completion.choices[0].finish_reason == "stop"
