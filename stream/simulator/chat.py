"""``POST /v1/chat/completions``: admit, draw a fault, write the answer, wait, reply.

Order of checks, as the provider does it: the body (400), the flex tier's capacity
(429 ``resource_unavailable``), the rate limits (429, nothing consumed); then the answer
time passes and the answer (or the injected 5xx) goes out.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from stream.model.prompt import parse_events
from stream.model.tokens import CHARS_PER_TOKEN, estimate_messages, estimate_tokens
from stream.simulator import answers, faults, oracle
from stream.simulator.chat_request import ChatRequest, parse_chat
from stream.simulator.errors import ApiError, bad_request, json_response, read_json
from stream.simulator.jsonschema import outside, spoil_enum
from stream.simulator.state import STATE, SimState
from stream.simulator.teacher import Teacher

SERVER_ERRORS = {
    "error_500": (500, "The server had an error while processing your request. Sorry about that!"),
    "error_503": (503, "The server is overloaded or not ready yet."),
}


def _tier(requested: str | None) -> str:
    return "default" if requested in (None, "auto") else str(requested)


def _admit(state: SimState, chat: ChatRequest, prompt_tokens: int, fault: str | None) -> None:
    settings = state.settings
    if _tier(chat.service_tier) == "flex" and not settings.flex_available:
        raise ApiError(
            429,
            "Flex processing capacity is temporarily unavailable (Resource Unavailable). "
            "Retry later, or send service_tier='default'.",
            kind="resource_unavailable",
            param="service_tier",
            code="resource_unavailable",
        )
    if fault == "rate_limit":
        raise ApiError(
            429,
            f"Rate limit reached for {chat.model} on requests per min (RPM): forced by "
            f"{faults.FAULT_HEADER}. Please try again in 1s.",
            kind="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "1", "retry-after-ms": "1000"},
        )
    reserve = prompt_tokens + (chat.max_completion_tokens or settings.default_max_completion_tokens)
    state.limiter.enforce(reserve, chat.model)


def _llama_room(chat: ChatRequest, prompt_tokens: int, window: int) -> int:
    """Completion tokens left in llama-cpp-python's context window; a prompt that fills it
    is refused with the 400 its server formats from llama.cpp's error."""
    if prompt_tokens >= window:
        completion = chat.max_completion_tokens
        total = prompt_tokens + (completion or 0)
        raise ApiError(
            400,
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{total} tokens ({prompt_tokens} in the messages, {completion} in the "
            "completion). Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    return window - prompt_tokens


def _answer(chat: ChatRequest, salt: object, teacher: Teacher | None) -> tuple[Any, str]:
    """The parsed answer (None in text mode) and its text."""
    events = parse_events(chat.last_user)
    texts = [text for _, text in events]
    oracle.expect([*texts, "\n".join(texts), chat.last_user])
    if chat.mode in ("json_schema", "json_object") and chat.schema is not None:
        value = answers.structured(chat.schema, events, chat.last_user, salt, teacher)
    elif chat.mode == "json_object":
        schema = answers.embedded_schema(chat.instructions) or answers.embedded_schema(
            chat.last_user
        )
        if schema is not None:
            value = answers.structured(schema, events, chat.last_user, salt, teacher)
        else:
            value = answers.free_object(events, chat.last_user)
    else:
        return None, answers.plain_text(events, chat.last_user)
    return value, orjson.dumps(value).decode()


def _wrong_enum(chat: ChatRequest, value: Any) -> str:
    schema = chat.schema or answers.embedded_schema(chat.instructions)
    if schema is not None:
        done, spoiled = spoil_enum(value, schema, schema)
        if done:
            return orjson.dumps(spoiled).decode()
    if isinstance(value, dict) and isinstance(value.get("label"), str):
        return orjson.dumps(
            {**value, "label": outside(answers.SENTIMENTS, value["label"])}
        ).decode()
    return orjson.dumps(
        {**value, "unexpected": True} if isinstance(value, dict) else value
    ).decode()


def _choice(
    chat: ChatRequest,
    index: int,
    fault: str,
    teacher: Teacher | None = None,
    room: int | None = None,
) -> tuple[dict[str, Any], int]:
    """One choice and its completion tokens. ``room``: the tokens left in the context
    window of an emulated local server, which generates until it is full unless a limit
    is set (a small model does not stop after the JSON: whitespace follows)."""
    value, content = _answer(chat, (chat.seed, index), teacher)
    finish = "stop"
    refusal: str | None = None
    if fault == "refusal":
        refusal = faults.REFUSAL
    elif fault == "invalid_json":
        content = faults.break_json(content)
    elif fault == "wrong_enum":
        content = _wrong_enum(chat, value)
    elif fault == "truncated":
        content, finish = faults.truncate(content), "length"
    limit = chat.max_completion_tokens
    if room is not None:
        limit = min(limit or room, room)
        if chat.max_completion_tokens is None and refusal is None:
            content = (content + "\n" * (limit * CHARS_PER_TOKEN))[: limit * CHARS_PER_TOKEN]
            finish = "length"
    if refusal is None and limit is not None and estimate_tokens(content) > limit:
        content, finish = content[: limit * 4], "length"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if refusal else content,
        "refusal": refusal,
        "annotations": [],
    }
    choice = {"index": index, "message": message, "finish_reason": finish, "logprobs": None}
    return choice, estimate_tokens(refusal or content)


async def handle(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        forced = faults.parse_forced(request.headers.get(faults.FAULT_HEADER))
    except ValueError as exc:
        raise bad_request(str(exc), faults.FAULT_HEADER) from None
    emulate = state.settings.emulate
    chat = parse_chat(await read_json(request), emulate=emulate)
    oracle.LOG_TEACHER.set(state.log_teacher)  # this request's task only
    prompt_tokens = estimate_messages([{"content": text} for _, text in chat.contents])
    room: int | None = None
    if emulate == "llama-cpp-python":
        room = _llama_room(chat, prompt_tokens, state.settings.context_tokens)
    _admit(state, chat, prompt_tokens, forced)
    fault = forced or faults.draw(state.settings, state.rng)
    if fault != "none":
        state.stats.faults[fault] += 1
    choices, completion_tokens = [], 0
    for index in range(chat.n):
        choice, tokens = _choice(chat, index, fault, state.teacher, room)
        choices.append(choice)
        completion_tokens += tokens
    tier = _tier(chat.service_tier)
    if fault == "hang":
        await state.sleep(state.settings.hang_s)
    await state.sleep(state.latency_s(completion_tokens, flex=tier == "flex"))
    if fault in SERVER_ERRORS:
        status, message = SERVER_ERRORS[fault]
        raise ApiError(status, message, kind="server_error")
    cached = state.cache.lookup_and_store(chat.model, "".join(t for _, t in chat.contents))
    stats = state.stats
    stats.prompt_tokens += prompt_tokens
    stats.completion_tokens += completion_tokens
    stats.cached_tokens += cached
    return json_response(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": f"{chat.model}-simulated",
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": tier,
            "system_fingerprint": "sim",
        }
    )
