"""The enriched event: the original, unchanged, plus an ``enrichment`` block.

A route's ``output`` option picks one of three shapes for its output topic:

* ``enriched`` (default): ``{"event": <what the producer sent>, "enrichment": {...}}``:
  the original sits under its own key, byte-for-byte the JSON the producer sent (or the
  raw text line), so nothing a producer sends can collide with the block;
* ``merged``: the producer's object itself with the block added under ``merge_key``
  (``"enrichment"`` by default), for consumers that want one flat record;
* ``answer``: the handler's answer alone (``answer.<handler>.schema.json``), keyed and
  headed like the input.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from stream import secrets

SCHEMA_VERSION = 1


class Tokens(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: float = Field(0.0, description="input tokens (this event's share of its request)")
    cached: float = Field(0.0, description="of which billed at the cached-input price")
    completion: float = Field(0.0, description="output tokens (this event's share)")


class Enrichment(BaseModel):
    """What sluicegate added to an event, and what it cost."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    handler: str
    route: str
    answer: dict[str, Any] = Field(description="the handler's answer (see its schema)")
    confidence: float | None = Field(None, ge=0, le=1)
    source: str = Field(
        description='"local" (the free local tier), "cache" (an earlier identical '
        "event's answer) or the model id that answered"
    )
    tier: Literal["local", "cache", "model"]
    escalated: bool = Field(False, description="a larger model answered after nano hesitated")
    tokens: Tokens = Tokens()
    cost_usd: float = 0.0
    latency_ms: float = Field(description="time from the start of handling to the answer")
    redactions: dict[str, int] = Field(
        default_factory=dict, description="PII replaced before the model saw the text, by kind"
    )
    schema_version: int = SCHEMA_VERSION


class EnrichedEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event: Any = Field(description="the original event exactly as produced")
    enrichment: Enrichment


OutputShape = Literal["enriched", "merged", "answer"]
DEFAULT_MERGE_KEY = "enrichment"


class MergedEvent(BaseModel):
    """The ``merged`` shape: the producer's fields as sent, plus the enrichment block
    under the route's ``merge_key`` (this schema shows the default key)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    enrichment: Enrichment


Severity = Literal["info", "warning", "critical"]


class Alert(BaseModel):
    """A noteworthy event for the alerts topic.

    ``dedup_key`` names the incident, not the record: alerts that share it are one
    incident (a burst of errors of one service in one window, one budget threshold on
    one day), so a pager groups them instead of paging once per record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(
        description="moderation.violates, label, logs.level, logs.error_burst, "
        "budget.threshold, dlq.cap_approaching"
    )
    severity: Severity
    dedup_key: str
    reason: str
    route: str | None = None
    source: str | None = Field(None, description="topic[partition]@offset of the input event")
    at: AwareDatetime
    details: dict[str, Any] = Field(default_factory=dict)
    enriched: EnrichedEvent | None = Field(None, description="the event that raised it")

    # What an alert says of itself is masked as it is made: a reason can quote a
    # provider's message (with the key it refused), a detail a log line's password=...
    # The event it carries is the producer's data, published as it came.
    @field_validator("reason", "dedup_key")
    @classmethod
    def _mask_text(cls, value: str) -> str:
        return secrets.mask_text(value)

    @field_validator("details")
    @classmethod
    def _mask_details(cls, value: dict[str, Any]) -> dict[str, Any]:
        return secrets.mask_mapping(value)
