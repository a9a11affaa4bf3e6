"""The two record shapes the runtime moves around: what came in and what goes out."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.kafka.headers import Headers


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
