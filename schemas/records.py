"""Raw Kafka records as the runtime hands them to handlers and takes outputs back.

Plain dataclasses (not pydantic): they carry bytes exactly as on the wire and sit on the
hot path, so they are built once per record with no validation cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Record headers: (name, bytes) pairs, order and repeats kept.
Headers = tuple[tuple[str, bytes], ...]

_Setter = Callable[[Any, Any], None]


def _slot_setters(cls: type, *names: str) -> tuple[_Setter, ...]:
    """The setters of ``cls``'s slots, which bypass the frozen dataclass's ``__setattr__``."""
    return tuple(cls.__dict__[name].__set__ for name in names)


# Both classes are frozen, and a frozen dataclass's generated __init__ assigns every field
# through object.__setattr__, which costs more than the rest of a record's trip through
# the runtime. Their __init__ below sets the slots directly instead: half the cost, the
# same immutable object.


@dataclass(frozen=True, slots=True, init=False)
class SourceRecord:
    """One consumed Kafka record, bytes exactly as they arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None

    def __init__(  # noqa: PLR0917 - the positional signature the dataclass would generate
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        timestamp_ms: int | None = None,
    ) -> None:
        _set_topic, _set_partition, _set_offset, _set_key, _set_value, _set_headers, _set_ts = (
            _SOURCE_SETTERS
        )
        _set_topic(self, topic)
        _set_partition(self, partition)
        _set_offset(self, offset)
        _set_key(self, key)
        _set_value(self, value)
        _set_headers(self, headers)
        _set_ts(self, timestamp_ms)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True, init=False)
class OutRecord:
    """One record to produce: an enriched event, a DLQ envelope or an alert."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()

    def __init__(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        _set_topic, _set_key, _set_value, _set_headers = _OUT_SETTERS
        _set_topic(self, topic)
        _set_key(self, key)
        _set_value(self, value)
        _set_headers(self, headers)


_SOURCE_SETTERS = _slot_setters(
    SourceRecord, "topic", "partition", "offset", "key", "value", "headers", "timestamp_ms"
)
_OUT_SETTERS = _slot_setters(OutRecord, "topic", "key", "value", "headers")
