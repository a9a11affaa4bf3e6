"""Raw Kafka records as the runtime hands them to handlers and takes outputs back.

Plain dataclasses (not pydantic): they carry bytes exactly as on the wire and sit on the
hot path, so they are built once per record with no validation cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Record headers: (name, bytes) pairs, order and repeats kept.
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class SourceRecord:
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


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: an enriched event, a DLQ envelope or an alert."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default=())
