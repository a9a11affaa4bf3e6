"""The output record of an enriching handler, in the shape the route asks for.

The original event is carried exactly: when it was JSON, its bytes are embedded as they
arrived (``orjson.Fragment``) instead of a re-serialised parse, so integers beyond 64
bits, ``2**64``, ``1e-400`` and the producer's own spelling of numbers stay unchanged
(a parse would make them floats or ``0.0``). Only a raw text line, which is no JSON, is
encoded as a JSON string.
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.enriched import Enrichment, OutputShape
from schemas.errors import BadInput


def original_json(value: bytes | None, original: Any) -> orjson.Fragment | Any:
    """The original as it goes into the output: its own bytes if they were the JSON it
    was parsed from, else the (text) value itself."""
    if value is None:
        return original
    if isinstance(original, dict | list):
        return orjson.Fragment(value.strip())
    if isinstance(original, str) and value.lstrip()[:1] == b'"':
        try:  # a JSON string, or a raw line that happens to start with a quote
            if orjson.loads(value) == original:
                return orjson.Fragment(value.strip())
        except orjson.JSONDecodeError:
            pass
    return original


def output_value(
    value: bytes | None,
    original: Any,
    enrichment: Enrichment,
    shape: OutputShape = "enriched",
    merge_key: str = "enrichment",
) -> bytes:
    """The output record's value for ``shape`` (see ``schemas.enriched``)."""
    block = enrichment.model_dump(mode="json")
    if shape == "answer":
        return orjson.dumps(block["answer"])
    if shape == "merged":
        return _merged(value, original, block, merge_key)
    return orjson.dumps({"event": original_json(value, original), "enrichment": block})


def _merged(value: bytes | None, original: Any, block: dict[str, Any], key: str) -> bytes:
    """The event's object with ``key`` added: its bytes kept, the block spliced in
    before the closing brace. A raw text line becomes ``{"text": line, key: block}``."""
    if not isinstance(original, dict):
        return orjson.dumps({"text": original, key: block})
    if key in original:
        raise BadInput(
            f"the event already has a field {key!r}; output = merged would overwrite it "
            "(choose another merge_key for this route)"
        )
    if value is None:  # not reached: a dict came from a value
        return orjson.dumps({**original, key: block})
    body = value.strip()
    addition = orjson.dumps({key: block})[1:-1]  # '"key":{...}'
    head = body[:-1].rstrip()  # the object without its closing brace
    separator = b"" if head.endswith(b"{") else b","
    return head + separator + addition + b"}"
