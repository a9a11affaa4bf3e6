"""Bad requests are refused like the provider refuses them: status and error shape."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

pytestmark = pytest.mark.asyncio


def _strict(schema: dict[str, Any]) -> Any:
    return {"type": "json_schema", "json_schema": {"name": "Out", "strict": True, "schema": schema}}


async def _post(url: str, body: object, headers: dict[str, str] | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_missing_model_is_a_400_in_openai_shape(sim_url: str) -> None:
    """No model: 400 with {"error": {message, type, param, code}}."""
    status, body = await _post(
        f"{sim_url}/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": "Bearer sim"},
    )
    assert status == 400
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert "model" in body["error"]["message"]


async def test_missing_messages_is_a_400(client: AsyncOpenAI) -> None:
    """No messages: BadRequestError naming the parameter."""
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(model="gpt-5.4-nano", messages=[])
    assert raised.value.param == "messages"
    assert raised.value.code == "empty_array"


async def test_strict_schema_needs_additional_properties_false(client: AsyncOpenAI) -> None:
    """A strict schema with an object lacking additionalProperties: false is refused."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="gpt-5.4-nano",
            messages=[{"role": "user", "content": "hi"}],
            response_format=_strict(schema),
        )
    assert "additionalProperties" in raised.value.message
    assert raised.value.param == "response_format"


async def test_strict_schema_needs_every_property_required(client: AsyncOpenAI) -> None:
    """A strict schema whose `required` misses a property is refused, naming it."""
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="gpt-5.4-nano",
            messages=[{"role": "user", "content": "hi"}],
            response_format=_strict(schema),
        )
    assert "Missing 'b'" in raised.value.message


async def test_json_object_needs_the_word_json(client: AsyncOpenAI) -> None:
    """json_object mode without 'json' in the messages is refused, as the provider does."""
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model="gpt-5.4-nano",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_object"},
        )


async def test_no_api_key_is_a_401(sim_url: str) -> None:
    """Without `Authorization: Bearer ...` the API answers 401."""
    status, body = await _post(
        f"{sim_url}/chat/completions",
        {"model": "gpt-5.4-nano", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 401
    assert "API key" in body["error"]["message"]


async def test_unknown_route_is_404_and_wrong_method_405(sim_url: str) -> None:
    """Unknown paths are 404 and wrong methods 405, both with the error shape."""
    auth = {"Authorization": "Bearer sim"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(f"{sim_url}/nothing-here", json={}) as response:
            assert response.status == 404
            assert (await response.json())["error"][
                "message"
            ] == "Invalid URL (POST /v1/nothing-here)"
        async with http.get(f"{sim_url}/chat/completions") as response:
            assert response.status == 405
            assert "error" in await response.json()


async def test_body_that_is_not_json_is_a_400(sim_url: str) -> None:
    """A body that does not parse as JSON gets the provider's 'could not parse' 400."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sim_url}/chat/completions", data=b"{nope", headers={"Authorization": "Bearer s"}
        ) as response,
    ):
        assert response.status == 400
        assert "could not parse the JSON body" in (await response.json())["error"]["message"]


async def test_unknown_parameter_is_refused(client: AsyncOpenAI) -> None:
    """A parameter the API does not know is a 400 naming it, not silently ignored."""
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="gpt-5.4-nano",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"temprature": 0.2},
        )
    assert "temprature" in raised.value.message
