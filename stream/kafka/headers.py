"""Record headers in one shape: a tuple of (name, bytes) pairs, order and repeats kept."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.records import Headers, SourceRecord

if TYPE_CHECKING:  # the CLI imports this module; keep confluent_kafka out of `--help`
    from confluent_kafka import Message


def _as_bytes(value: str | bytes | None) -> bytes | None:
    # A NULL header value stays None: it differs from an empty one, and a replay from
    # the DLQ must send back what arrived.
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else value


def message_headers(msg: Message) -> Headers:
    """A message's headers as received; librdkafka may hand back None for "no headers"."""
    raw = msg.headers()
    return header_tuples(raw) if raw else ()


def header_tuples(
    raw: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None],
) -> Headers:
    """Headers as confluent-kafka hands them over (None for a NULL value, kept)."""
    items = raw.items() if isinstance(raw, dict) else raw
    return tuple((name, _as_bytes(value)) for name, value in items)


# Headers the processor adds to what it produces, so every output traces to its input.
SOURCE_TOPIC = "sluicegate.source.topic"
SOURCE_PARTITION = "sluicegate.source.partition"
SOURCE_OFFSET = "sluicegate.source.offset"
PROCESSOR_VERSION = "sluicegate.version"
ROUTE = "sluicegate.route"
# Only on dead-letter records: why and where the event failed.
DLQ_ERROR_CLASS = "sluicegate.dlq.error.class"
DLQ_ERROR_MESSAGE = "sluicegate.dlq.error.message"
DLQ_STAGE = "sluicegate.dlq.stage"
DLQ_ATTEMPTS = "sluicegate.dlq.attempts"
DLQ_FAILED_AT = "sluicegate.dlq.failed_at"
DLQ_SOURCE_TIMESTAMP = "sluicegate.dlq.source.timestamp"
# "envelope": the value is a DlqEnvelope (JSON). "raw": the envelope would not fit in a
# record, so the value is the original value itself and these headers tell the rest.
DLQ_FORMAT = "sluicegate.dlq.format"
DLQ_HANDLER = "sluicegate.dlq.handler"
DLQ_ORIGINAL_HEADERS = "sluicegate.dlq.original_headers"  # how many come first (raw only)
DLQ_VALUE_BYTES = "sluicegate.dlq.value_bytes"  # the original value's length (truncated only)
OURS_PREFIX = "sluicegate."


def header(headers: Headers, name: str) -> bytes | None:
    """The last value of header ``name``, or None."""
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def trace_headers(record: SourceRecord, route: str, version: str) -> Headers:
    """The headers every output of ``record`` carries: where it came from, what made it."""
    return with_offset(partition_trace(record.topic, record.partition, route, version), record)


def partition_trace(topic: str, partition: int, route: str, version: str) -> Headers:
    """The trace headers shared by every record of one partition (built once)."""
    return (
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (PROCESSOR_VERSION, version.encode()),
        (ROUTE, route.encode()),
    )


def with_offset(shared: Headers, record: SourceRecord) -> Headers:
    """``shared`` trace headers plus the record's own offset."""
    return (*shared, (SOURCE_OFFSET, str(record.offset).encode()))
