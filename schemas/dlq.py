"""The dead-letter envelope: the JSON value of every record on the DLQ topic.

It carries the failed record exactly as it arrived (key, value and headers as bytes, so
invalid UTF-8, null bytes and large values survive) plus why, where and when it failed,
which is everything ``sluicegate dlq inspect`` shows and ``sluicegate dlq replay`` needs
to publish the original again. Bytes are base64 in JSON; pydantic writes the URL-safe
alphabet (``-_``) and reads both alphabets.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class DlqEnvelope(BaseModel):
    """One dead-lettered event. Frozen: an envelope is a record of what happened."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    schema_version: Literal[1] = 1
    route: str
    handler: str
    source_topic: str
    source_partition: int = Field(ge=0)
    source_offset: int = Field(ge=0)
    source_timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]  # None: a NULL header value, kept as null
    error_class: str
    error_message: str
    stage: str
    attempts: int = Field(ge=1)
    failed_at: AwareDatetime
    processor_version: str
    # Set when the DLQ could not hold the whole value: ``value`` is then only its first
    # bytes and this is the original's length (read the original at ``where`` while the
    # input topic retains it). Such an envelope is not replayed.
    value_bytes: int | None = Field(default=None, ge=0)

    @field_validator("failed_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # One zone everywhere, so envelopes from replicas in different zones sort and compare.
        return value.astimezone(UTC)

    @property
    def where(self) -> str:
        """Where the failed event came from, as ``topic[partition]@offset``."""
        return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"

    def to_json(self) -> bytes:
        """The envelope as the UTF-8 JSON bytes that go on the DLQ topic."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> DlqEnvelope:
        """Parse a DLQ record value; raises ``pydantic.ValidationError`` if it is not one."""
        return cls.model_validate_json(data)
