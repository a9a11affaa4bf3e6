"""Record headers in one shape: a tuple of (name, bytes) pairs, order and repeats kept."""

from __future__ import annotations

from confluent_kafka import Message

Headers = tuple[tuple[str, bytes], ...]


def _as_bytes(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def message_headers(msg: Message) -> Headers:
    """A message's headers as received; librdkafka may hand back None for "no headers"."""
    raw = msg.headers()
    if not raw:
        return ()
    items = raw.items() if isinstance(raw, dict) else raw
    return tuple((name, _as_bytes(value)) for name, value in items)
