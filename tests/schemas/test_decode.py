"""Decoding refuses, as BadInput with a clear message, what would otherwise fail later
as a handler error: JSON nested past the stated limit, and text that is only spaces."""

from __future__ import annotations

import orjson
import pytest

from schemas.errors import BadInput
from schemas.events import MAX_JSON_DEPTH, LogEvent, Post, Review, check_depth, decode_event


def nested(depth: int) -> bytes:
    """An object whose field ``a`` holds arrays, ``depth`` levels in all."""
    return b'{"text": "fine", "a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 254, 255, 600, 1023, 1024, 5000])
def test_deep_json_is_bad_input_naming_the_limit(depth: int) -> None:
    """Any depth past the limit (the 254-1,023 that crashed handlers included) is
    BadInput at decode, for JSON routes and raw-text routes alike."""
    for kind, raw in ((Review, False), (LogEvent, True)):
        with pytest.raises(BadInput, match=f"more than {MAX_JSON_DEPTH} levels"):
            decode_event(nested(depth), kind, raw_text=raw)


def test_depth_at_the_limit_is_accepted() -> None:
    """Exactly the limit decodes; brackets inside strings do not count."""
    _, event = decode_event(nested(MAX_JSON_DEPTH), Review, raw_text=False)
    assert event.text() == "fine"
    brackety = orjson.dumps({"text": "[" * 500 + "{" * 500})
    decode_event(brackety, Review, raw_text=False)


def test_wide_values_are_not_deep() -> None:
    """Many shallow brackets (a big array of objects) are no depth: accepted."""
    wide = orjson.dumps({"text": "x", "items": [{"a": [1, {"b": "[x"}]}] * 30_000})
    check_depth(wide, orjson.loads(wide))


@pytest.mark.parametrize("value", [b'{"text": "   "}', b'{"body": "\\n\\t "}',
                                   b'{"message": "  "}'])  # fmt: skip
def test_whitespace_only_text_is_bad_input(value: bytes) -> None:
    """A text of only whitespace has nothing to judge: BadInput, not an enriched event."""
    for kind in (Review, Post, LogEvent):
        with pytest.raises(BadInput):
            decode_event(value, kind, raw_text=False)


@pytest.mark.parametrize("kind", [Review, Post])
@pytest.mark.parametrize("big", [123456789012345678901234567890, 2**64, -(2**70), 10**300])
def test_an_id_beyond_64_bits_is_read_exactly(kind: type[Review] | type[Post], big: int) -> None:
    # JSON has no integer size limit and ids of 20+ digits exist (snowflakes, decimals):
    # orjson reads them as floats, which an integer id field refused.
    value = b'{"id": %d, "text": "fine"}' % big
    original, event = decode_event(value, kind, raw_text=False)
    assert original["id"] == big
    assert isinstance(original["id"], int)
    ident = getattr(event, "review_id" if kind is Review else "post_id")
    assert ident == big
