"""Input events: log lines, product reviews, user-generated posts.

Producers are other teams' services, so the models are lenient where that costs nothing
(aliases for common field names, unknown fields kept) and strict where the handler needs
something (a text to judge). The enriched event carries the original unchanged, so these
models only read: they never rewrite what the producer sent.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from schemas.errors import BadInput


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    def text(self) -> str:
        """What the handler judges."""
        raise NotImplementedError


class LogEvent(_Event):
    """A log line as a shipper sends it (Filebeat, Fluent Bit, Vector, OTel): JSON with
    the message and maybe its time, level and service. Raw text lines become
    ``LogEvent(message=line)``."""

    message: str = Field(
        min_length=1, validation_alias=AliasChoices("message", "msg", "log", "@message", "line")
    )
    timestamp: str | None = Field(
        None, validation_alias=AliasChoices("timestamp", "@timestamp", "time", "ts")
    )
    level: str | None = Field(None, validation_alias=AliasChoices("level", "severity", "lvl"))
    service: str | None = Field(
        None, validation_alias=AliasChoices("service", "component", "logger", "app")
    )
    host: str | None = None

    def text(self) -> str:
        return self.message


class Review(_Event):
    """A product review."""

    review_id: str | int | None = Field(None, validation_alias=AliasChoices("review_id", "id"))
    product_id: str | int | None = None
    author: str | dict[str, Any] | None = None  # a name, or an object with id and name
    rating: float | None = Field(None, ge=0, le=10)
    title: str | None = None
    body: str = Field(
        min_length=1,
        validation_alias=AliasChoices("text", "body", "review", "content", "comment"),
    )
    created_at: datetime | None = None

    def text(self) -> str:
        return f"{self.title}\n{self.body}" if self.title else self.body


class Post(_Event):
    """A user-generated post or comment."""

    post_id: str | int | None = Field(None, validation_alias=AliasChoices("post_id", "id"))
    author: str | dict[str, Any] | None = None  # a name, or an object with id and name
    body: str = Field(
        min_length=1, validation_alias=AliasChoices("text", "body", "content", "comment")
    )
    created_at: datetime | None = None
    url: str | None = None

    def text(self) -> str:
        return self.body


EVENT_KINDS: dict[str, type[_Event]] = {"log": LogEvent, "review": Review, "post": Post}

# Objects and arrays nested deeper than this are bad input. Real events nest a few
# levels; a value nested hundreds deep only makes parsers, validators and the model's
# prompt builder recurse (Python's own limit is near 1,000) and fail as handler errors.
MAX_JSON_DEPTH = 64
ORJSON_MAX_DEPTH = 254  # orjson.dumps raises past this many nested levels
# orjson reads an integer beyond 64 bits as a float; a value with a run of 20 digits or
# more (the longest 64-bit integer has 20) is read again by the standard library, whose
# integers are exact. The match may be inside a string: reading again changes nothing then.
_LONG_DIGITS = re.compile(rb"\d{20}")


def decode_event(
    value: bytes | None, kind: type[_Event], *, raw_text: bool, max_bytes: int = 1_000_000
) -> tuple[Any, _Event]:
    """Parse a record value: ``(original, event)``. ``original`` is what the producer
    sent (a JSON value, or the text itself for raw lines), kept for the enriched event.

    With ``raw_text``, a value that is not a JSON object is taken as the text (a raw log
    line, a plain message). Anything else that does not fit raises ``BadInput`` saying
    what is wrong and what is accepted.
    """
    if value is None:
        raise BadInput("the record has no value (null); a JSON object or text is expected")
    check_size(value, max_bytes)
    try:
        original: Any = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise BadInput(
                f"the value nests objects or arrays more than {MAX_JSON_DEPTH} levels deep; "
                f"at most {MAX_JSON_DEPTH} are accepted"
            ) from None
        if not raw_text:
            raise BadInput(f"the value is not valid JSON: {exc}") from None
        original = _utf8(value)
    if isinstance(original, dict | list):
        check_depth(value, original)
        if _LONG_DIGITS.search(value):
            original = json.loads(value)  # orjson refused numbers past a double's range
    if not isinstance(original, dict):
        if not raw_text or not isinstance(original, str):
            raise BadInput(
                f"the value is JSON {type(original).__name__}; a JSON object with the "
                f"{kind.__name__} fields is expected" + (" (or a text line)" if raw_text else "")
            )
        text = original.strip()
        if not text:
            raise BadInput("the value is empty text; there is nothing to judge")
        first = next(f for f in kind.model_fields.values() if f.is_required())
        aliases = first.validation_alias
        name = aliases.choices[0] if isinstance(aliases, AliasChoices) else "text"
        return original, kind.model_validate({name: text})
    no_duplicate_keys(value)
    try:
        event = kind.model_validate(original)
    except ValidationError as exc:
        raise BadInput(f"the value is not a valid {kind.__name__}: {_brief(exc)}") from None
    if not event.text().strip():
        raise BadInput(f"the {kind.__name__}'s text is only whitespace; there is nothing to judge")
    return original, event


def check_depth(value: bytes, parsed: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """``BadInput`` naming the limit if ``parsed`` (the JSON of ``value``) nests objects
    or arrays deeper than ``limit``.

    Measured in C, not by a Python walk: orjson refuses to serialise more than
    ``ORJSON_MAX_DEPTH`` levels, so ``parsed`` wrapped in ``ORJSON_MAX_DEPTH - limit``
    lists serialises exactly when it is at most ``limit`` deep (about 5 ms per MB, and
    only for values with more brackets than the limit).
    """
    if value.count(b"[") + value.count(b"{") <= limit:
        return  # fewer brackets than the limit cannot nest past it: most events
    wrapped = parsed
    for _ in range(ORJSON_MAX_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        raise BadInput(
            f"the value nests objects or arrays more than {limit} levels deep; at most "
            f"{limit} are accepted"
        ) from None


def check_size(value: bytes, max_bytes: int) -> None:
    if len(value) > max_bytes:
        raise BadInput(
            f"the value is {len(value):,} bytes; at most {max_bytes:,} are accepted "
            "(the route's max_event_bytes)"
        )


def no_duplicate_keys(value: bytes) -> None:
    """A key given twice is ambiguous (parsers disagree on which one wins): refuse it.
    The fast parser keeps the last one silently, so the value is parsed a second time by
    the standard library with a hook that sees every key."""

    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, item in pairs:
            if key in seen:
                raise BadInput(f"the key {key!r} appears twice in one JSON object")
            seen[key] = item
        return seen

    json.loads(value, object_pairs_hook=check)


def _utf8(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"the value is neither JSON nor UTF-8 text: {exc}") from None


def _brief(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "(event)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
