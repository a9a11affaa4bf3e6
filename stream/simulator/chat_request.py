"""A Chat Completions request body, checked the way the provider checks it.

Every refusal is an ``ApiError`` with the provider's status, message, ``param`` and
``code``, so the client under test meets the same 400s it would meet in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from stream.model.prompt import parse_events
from stream.simulator.errors import ApiError, bad_request
from stream.simulator.jsonschema import Schema, SchemaProblem, check_strict, resolve

Mode = Literal["text", "json_object", "json_schema"]
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
TIERS = ("auto", "default", "flex", "scale", "priority")
# The parameters of the SDK installed: anything else is refused, as the provider does.
KNOWN_PARAMS = frozenset(CompletionCreateParamsBase.__annotations__) | {"stream"}
_SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ChatRequest:
    """What the simulator needs from a valid request; message contents as plain text."""

    model: str
    contents: tuple[tuple[str, str], ...]  # (role, text) in order
    mode: Mode
    schema: Schema | None
    max_completion_tokens: int | None
    service_tier: str | None
    n: int
    seed: int | None

    @property
    def last_user(self) -> str:
        """The last user message that holds events, else the last user message: a
        repair turn ("that answer was invalid...") comes after the events, and the model
        sees the whole conversation."""
        users = [text for role, text in self.contents if role == "user"]
        with_events = [text for text in users if parse_events(text)]
        return (with_events or users or [""])[-1]

    @property
    def instructions(self) -> str:
        return "\n".join(t for role, t in self.contents if role in ("system", "developer"))


def _type_name(value: object) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names |= {list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _invalid_type(param: str, expected: str, value: object) -> ApiError:
    return bad_request(
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param,
        "invalid_type",
    )


def _missing(param: str) -> ApiError:
    return bad_request(
        f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    )


def _text_of(content: object, param: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise _invalid_type(param, "one of a string or array of objects", content)
    parts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or "type" not in part:
            raise _invalid_type(f"{param}[{index}]", "an object with a 'type'", part)
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise _missing(f"{param}[{index}].text")
            parts.append(part["text"])
    return "".join(parts)


def _messages(body: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array of objects", messages)
    if not messages:
        raise bad_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but "
            "got an empty array instead.",
            "messages",
            "empty_array",
        )
    out = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid_type(where, "an object", message)
        if "role" not in message:
            raise _missing(f"{where}.role")
        if message["role"] not in ROLES:
            supported = ", ".join(f"'{r}'" for r in ROLES)
            raise bad_request(
                f"Invalid value: '{message['role']}'. Supported values are: {supported}.",
                f"{where}.role",
                "invalid_value",
            )
        out.append((str(message["role"]), _text_of(message.get("content"), f"{where}.content")))
    return tuple(out)


def _int(body: dict[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid_type(key, "an integer", value)
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if value < low else f"<= {high}"
        which = "below minimum" if value < low else "above maximum"
        raise bad_request(
            f"Invalid '{key}': integer {which} value. Expected a value {bound}, but got "
            f"{value} instead.",
            key,
            f"integer_{which.replace(' ', '_')}_value",
        )
    return value


# llama-cpp-python's server validates the body with pydantic and answers a failure with
# HTTP 500 and pydantic's text.
LLAMA_NO_JSON_SCHEMA = (
    "1 validation error for CreateChatCompletionRequest\nresponse_format.type\n  Input "
    "should be 'text' or 'json_object' [type=literal_error, input_value='json_schema', "
    "input_type=str]"
)


def _llama_response_format(spec: object) -> tuple[Mode, Schema | None]:
    """llama-cpp-python: ``text`` or ``json_object``, the latter with an optional
    ``schema`` that its grammar then enforces; no ``json_schema``, no 'json' word rule."""
    if spec is None:
        return "text", None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return "text", None
    if kind != "json_object" or not isinstance(spec, dict):
        raise ApiError(500, LLAMA_NO_JSON_SCHEMA.replace("json_schema", str(kind)),
                       kind="internal_server_error")  # fmt: skip
    schema = spec.get("schema")
    if schema is None:
        return "json_object", None
    if not isinstance(schema, dict):
        raise ApiError(500, "response_format.schema: Input should be a valid dictionary",
                       kind="internal_server_error")  # fmt: skip
    try:
        resolve(schema, schema)
    except SchemaProblem as problem:
        raise ApiError(500, f"invalid schema: {problem}", kind="internal_server_error") from None
    return "json_object", schema


def _response_format(
    body: dict[str, Any], contents: tuple[tuple[str, str], ...]
) -> tuple[Mode, Schema | None]:
    spec = body.get("response_format")
    if spec is None:
        return "text", None
    if not isinstance(spec, dict):
        raise _invalid_type("response_format", "an object", spec)
    kind = spec.get("type")
    if kind == "text":
        return "text", None
    if kind == "json_object":
        if not any("json" in text.lower() for _, text in contents):
            raise bad_request(
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                "messages",
            )
        return "json_object", None
    if kind != "json_schema":
        raise bad_request(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object' and "
            "'json_schema'.",
            "response_format.type",
            "invalid_value",
        )
    spec = spec.get("json_schema")
    if not isinstance(spec, dict):
        raise _missing("response_format.json_schema")
    name = spec.get("name")
    if not isinstance(name, str):
        raise _missing("response_format.json_schema.name")
    if not _SCHEMA_NAME.match(name):
        raise bad_request(
            "Invalid 'response_format.json_schema.name': string does not match pattern. "
            "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
            "response_format.json_schema.name",
            "invalid_value",
        )
    schema = spec.get("schema") or {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise _invalid_type("response_format.json_schema.schema", "an object", schema)
    try:
        if spec.get("strict") is True:
            check_strict(schema)
        resolve(schema, schema)
    except SchemaProblem as problem:
        raise bad_request(
            f"Invalid schema for response_format '{name}': {problem}", "response_format"
        ) from None
    return "json_schema", schema


def parse_chat(body: object, *, emulate: str = "openai") -> ChatRequest:
    """The request in ``body``, or the ``ApiError`` the provider would answer; with
    ``emulate="llama-cpp-python"``, as that server reads it."""
    if not isinstance(body, dict):
        raise bad_request("Invalid request body: expected a JSON object.")
    unknown = sorted(body.keys() - KNOWN_PARAMS)
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {unknown[0]}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("you must provide a model parameter")
    contents = _messages(body)
    if body.get("stream"):
        raise bad_request(
            "The simulator does not stream; send stream=false.", "stream", "unsupported_value"
        )
    temperature = body.get("temperature")
    if temperature is not None and not (
        isinstance(temperature, int | float) and 0 <= temperature <= 2
    ):
        raise bad_request(
            f"Invalid 'temperature': expected a number from 0 to 2, got {temperature!r}.",
            "temperature",
            "invalid_value",
        )
    tier = body.get("service_tier")
    if tier is not None and tier not in TIERS:
        supported = ", ".join(f"'{t}'" for t in TIERS)
        raise bad_request(
            f"Invalid value: '{tier}'. Supported values are: {supported}.",
            "service_tier",
            "invalid_value",
        )
    if emulate == "llama-cpp-python":
        mode, schema = _llama_response_format(body.get("response_format"))
        # It reads max_tokens only: max_completion_tokens is ignored.
        limit = _int(body, "max_tokens", 1)
        return ChatRequest(model, contents, mode, schema, limit, tier, 1, None)
    mode, schema = _response_format(body, contents)
    limit = _int(body, "max_completion_tokens", 1)
    return ChatRequest(
        model=model,
        contents=contents,
        mode=mode,
        schema=schema,
        max_completion_tokens=limit if limit is not None else _int(body, "max_tokens", 1),
        service_tier=tier,
        n=_int(body, "n", 1, 128) or 1,
        seed=_int(body, "seed", -(2**63)),
    )
