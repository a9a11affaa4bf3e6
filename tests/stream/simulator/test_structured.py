"""Structured outputs through the real SDK: valid against the request's schema, one item
per event in a micro-batch, labels that fit the text, and a model name that says so."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Literal

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from stream.model.prompt import format_events

pytestmark = pytest.mark.asyncio


class Verdict(StrEnum):
    safe = "safe"
    review = "review"
    violates = "violates"


class Span(BaseModel):
    text: str
    weight: int = Field(ge=1, le=5)


class Review(BaseModel):
    sentiment: Literal["positive", "negative", "neutral", "frustrated"]
    verdict: Verdict
    confidence: float = Field(ge=0, le=1)
    toxic: bool
    summary: str
    stars: int = Field(ge=1, le=5)
    language: Literal["en"]
    reply_to: str | None
    spans: list[Span] = Field(min_length=1, max_length=2)


class Item(BaseModel):
    id: str
    sentiment: Literal["positive", "negative", "neutral"]
    confidence: float = Field(ge=0, le=1)


class Batch(BaseModel):
    results: list[Item]


def _user(*texts: str) -> list[ChatCompletionMessageParam]:
    events = [(f"ev-{i}", text) for i, text in enumerate(texts)]
    return [
        {"role": "system", "content": "Classify each event; answer in JSON."},
        {"role": "user", "content": format_events(events)},
    ]


async def test_parse_validates_against_the_pydantic_model(client: AsyncOpenAI) -> None:
    """`chat.completions.parse(response_format=Model)` returns a parsed, valid instance."""
    completion = await client.chat.completions.parse(
        model="gpt-5.4-nano",
        messages=_user("Great phone, the battery lasts two days."),
        response_format=Review,
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, Review)
    assert message.refusal is None
    assert completion.choices[0].finish_reason == "stop"
    assert Review.model_validate_json(message.content or "") == message.parsed


async def test_model_field_says_simulated(client: AsyncOpenAI) -> None:
    """Every chat answer names the requested model with a `-simulated` suffix."""
    completion = await client.chat.completions.create(
        model="gpt-5.4-nano", messages=[{"role": "user", "content": "hello"}]
    )
    assert completion.model == "gpt-5.4-nano-simulated"
    assert completion.object == "chat.completion"
    assert completion.system_fingerprint == "sim"
    assert completion.id.startswith("chatcmpl-")


async def test_batch_has_one_item_per_event_in_order(client: AsyncOpenAI) -> None:
    """A `results` schema gets one item per `<event id>` block, in order, ids echoed."""
    texts = ["I love it, fantastic", "Terrible, it broke after a day", "It is blue", "ok"]
    completion = await client.chat.completions.parse(
        model="gpt-5.4-nano", messages=_user(*texts), response_format=Batch
    )
    parsed = completion.choices[0].message.parsed
    assert parsed is not None
    assert [item.id for item in parsed.results] == [f"ev-{i}" for i in range(len(texts))]


async def test_sentiment_labels_fit_obvious_texts(client: AsyncOpenAI) -> None:
    """Obviously positive, negative and neutral texts get those labels."""
    texts = [
        "I love it, fantastic",
        "This is awful, the worst purchase I ever made",
        "The parcel was delivered on Tuesday.",
    ]
    completion = await client.chat.completions.parse(
        model="gpt-5.4-nano", messages=_user(*texts), response_format=Batch
    )
    parsed = completion.choices[0].message.parsed
    assert parsed is not None
    assert [item.sentiment for item in parsed.results] == ["positive", "negative", "neutral"]


async def test_moderation_verdicts_fit_obvious_texts(client: AsyncOpenAI) -> None:
    """A safe/review/violates enum says `violates` for abuse and `safe` for small talk."""
    verdicts = []
    for text in ("You are a fucking idiot, shut up", "Thanks, see you at lunch"):
        completion = await client.chat.completions.parse(
            model="gpt-5.4-nano", messages=_user(text), response_format=Review
        )
        parsed = completion.choices[0].message.parsed
        assert parsed is not None
        verdicts.append((parsed.verdict, parsed.toxic))
    assert verdicts == [(Verdict.violates, True), (Verdict.safe, False)]


async def test_same_request_same_answer(client: AsyncOpenAI) -> None:
    """Answers are a pure function of the request: retries and replays are reproducible."""
    answers = [
        (
            await client.chat.completions.create(
                model="gpt-5.4-nano",
                messages=_user("The app crashes when I open settings."),
                response_format={"type": "json_object"},
            )
        )
        .choices[0]
        .message.content
        for _ in range(2)
    ]
    assert answers[0] == answers[1]


async def test_json_object_follows_a_schema_in_the_prompt(client: AsyncOpenAI) -> None:
    """json_object mode follows a ```json schema written into the system message."""
    schema = {
        "type": "object",
        "properties": {
            "level": {"type": "string", "enum": ["debug", "info", "warning", "error"]},
            "service": {"type": "string"},
        },
    }
    completion = await client.chat.completions.create(
        model="gpt-5.4-nano",
        messages=[
            {"role": "system", "content": f"Answer in JSON:\n```json\n{json.dumps(schema)}\n```"},
            {"role": "user", "content": format_events([("1", "ERROR db timeout after 30s")])},
        ],
        response_format={"type": "json_object"},
    )
    answer = json.loads(completion.choices[0].message.content or "")
    assert answer["level"] == "error"
    assert set(answer) == {"level", "service"}


async def test_json_object_without_schema_gives_a_label(client: AsyncOpenAI) -> None:
    """json_object mode with no schema in the prompt answers `{"label": ...}`."""
    completion = await client.chat.completions.create(
        model="gpt-5.4-nano",
        messages=[{"role": "user", "content": "Reply in json: I love it, fantastic"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"label": "positive"}


async def test_usage_counts_prompt_and_completion(client: AsyncOpenAI) -> None:
    """usage carries the estimates of stream.model.tokens and the details objects."""
    completion = await client.chat.completions.create(
        model="gpt-5.4-nano", messages=[{"role": "user", "content": "x" * 400}]
    )
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 3 + 4 + 100
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


async def test_max_completion_tokens_cuts_with_length(client: AsyncOpenAI) -> None:
    """An answer longer than max_completion_tokens is cut and finishes with `length`."""
    completion = await client.chat.completions.create(
        model="gpt-5.4-nano",
        messages=_user("a long review " * 40),
        response_format={"type": "json_object"},
        max_completion_tokens=2,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert len(choice.message.content or "") <= 8
