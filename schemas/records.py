"""Raw Kafka records as the runtime hands them to handlers and takes outputs back.

Immutable named tuples (not pydantic, not dataclasses): they carry bytes exactly as on
the wire and sit on the hot path, built once per record with no validation cost. A
named tuple is built in C (``make`` below skips even the Python-level ``__new__``) and
its fields are read by C descriptors: a frozen dataclass costs several times as much to
build, which was more than the rest of a record's trip through the runtime.
"""

from __future__ import annotations

from typing import NamedTuple

# Record headers: (name, bytes) pairs, order and repeats kept.
Headers = tuple[tuple[str, bytes | None], ...]  # None: a NULL header value

# ``make(SourceRecord, (topic, partition, offset, key, value, headers, timestamp_ms))``:
# a record from a tuple of every field, in order, for callers building one per event.
make = tuple.__new__


class SourceRecord(NamedTuple):
    """One consumed Kafka record, bytes exactly as they arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class OutRecord(NamedTuple):
    """One record to produce: an enriched event, a DLQ envelope or an alert."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
