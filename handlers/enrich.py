"""The shape every enriching handler shares: decode -> local tier -> redact -> model.

A subclass says what its events are (``kind``), what it asks the model (``task``), what
its free local tier can answer (``local_now`` on the event loop, ``local_later`` when it
is worth batching), and when an answer is an alert. This base does the rest the same way
for all of them: the cascade (a confident local answer skips the model), PII redaction
before the model sees the text, escalation to a larger model when nano hesitates, the
budget's local-only mode, and the enriched event with its cost and latency.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import orjson
from pydantic import BaseModel, Field

from handlers.base import Handler, HandlerContext, HandlerOptions, Result
from handlers.model import ModelPort, Reply, Task
from handlers.redact import ALL_KINDS, Redactor
from handlers.shapes import output_value
from schemas.enriched import (
    DEFAULT_MERGE_KEY,
    Alert,
    EnrichedEvent,
    Enrichment,
    OutputShape,
    Severity,
    Tokens,
)
from schemas.errors import SluicegateError
from schemas.events import _Event, decode_event
from schemas.records import SourceRecord

if TYPE_CHECKING:  # the learned tier imports scikit-learn: loaded by a route that learns
    from stream.learn.tier import Decision, LearnedTier


class EnrichOptions(HandlerOptions):
    """Options every enriching handler takes (``[routes.options]``)."""

    raw_text: bool = Field(
        False, description="also accept values that are not JSON objects: the text itself"
    )
    redact: tuple[str, ...] = Field(
        tuple(sorted(ALL_KINDS)), description="PII kinds replaced before the model call"
    )
    batch: bool = Field(True, description="micro-batch this route's model calls")
    max_event_bytes: int = Field(
        1_000_000, ge=1, description="larger values are bad input (the model has a context limit)"
    )
    local_tier: bool = Field(True, description="let a free local tier answer easy cases")
    learn: bool = Field(
        True, description="the learned local tier: a student trained on the model's answers "
        "answers when its audited agreement with the model clears local_target (stream/learn)"
    )  # fmt: skip
    local_target: float = Field(
        0.95, gt=0, le=1, description="agreement with the model the learned tier must keep"
    )
    audit_share: float = Field(
        0.05, gt=0, le=1, description="share of events the student could answer that the "
        "model still answers, to measure its agreement"
    )  # fmt: skip
    local_may_omit: tuple[str, ...] | None = Field(
        None, description="answer fields the learned tier may leave empty (free text it "
        "cannot write); unset: the handler's default; any other such field: it defers"
    )  # fmt: skip
    static_tier: bool = Field(
        False, description="also let the static heuristic (VADER, alt-profanity-check) answer "
        "alone at local_threshold, a threshold tuned offline that does not carry over to new "
        "data (EVAL.md); off by default"
    )  # fmt: skip
    local_threshold: float | None = Field(
        None, ge=0, le=1, description="the static tier's confidence needed to skip the "
        "model (with static_tier); unset: the handler's default, measured on labelled data"
    )  # fmt: skip
    escalate_model: str | None = Field(
        None, description="a larger model to ask when nano's confidence is low"
    )
    escalate_below: float = Field(0.5, ge=0, le=1)
    service_tier: Literal["default", "flex"] | None = None
    alert_on: tuple[str, ...] | None = Field(
        None, description="answer labels that also go to the alerts topic; unset: default"
    )
    output: OutputShape = Field(
        "enriched", description="the output record: enriched ({event, enrichment}), merged "
        "(the event's own fields plus merge_key) or answer (the answer alone)"
    )  # fmt: skip
    merge_key: str = Field(
        DEFAULT_MERGE_KEY, min_length=1, description="where output = merged puts the block"
    )


@dataclass(frozen=True)
class Answer:
    """A handler's answer before it is wrapped: the fields and how sure it is."""

    fields: dict[str, Any]
    confidence: float | None


class EnrichingHandler(Handler):
    uses_model = True
    Options: ClassVar[type[HandlerOptions]] = EnrichOptions
    options: EnrichOptions
    kind: ClassVar[type[_Event]]
    # The confidence a local answer needs by default (see EVAL.md for how it was chosen);
    # None: the handler has no local tier.
    default_threshold: ClassVar[float | None] = None
    default_alerts: ClassVar[tuple[str, ...]] = ()
    # Answer fields the learned tier may leave empty by default (free text it cannot write).
    default_may_omit: ClassVar[tuple[str, ...]] = ()
    # True if the local tier is a heuristic with a threshold tuned offline (it answers
    # alone only with static_tier); False if it is exact (the log template store).
    static_heuristic: ClassVar[bool] = True
    learns: ClassVar[bool] = True  # whether the learned local tier applies to this handler

    def __init__(self, options: HandlerOptions, context: HandlerContext | None = None) -> None:
        super().__init__(options, context)
        self.redactor = Redactor(frozenset(self.options.redact))
        threshold = self.options.local_threshold
        self.threshold = self.default_threshold if threshold is None else threshold
        # The static tier answers alone only when the route asks for it (static_tier); its
        # answer is otherwise kept for the budget's local-only mode.
        self.static_enabled = self.options.local_tier and self.threshold is not None
        self.local_enabled = self.static_enabled and (
            self.options.static_tier or not self.static_heuristic
        )
        self.answers_now = self.local_enabled and self.local_answers_now
        alerts = self.options.alert_on
        self.alert_labels = frozenset(self.default_alerts if alerts is None else alerts)
        self.tiers: Counter[str] = Counter()  # answers by tier: local, cache, model
        self.alerts_raised: Counter[str] = Counter()  # by alert kind
        self.task = self.make_task()
        self.learner: LearnedTier | None = None
        if self.learns and self.options.local_tier and self.options.learn:
            from stream.learn.tier import LearnedTier  # noqa: PLC0415 - see the imports

            omit = self.options.local_may_omit
            self.learner = LearnedTier(
                self.task.output,
                target=self.options.local_target,
                audit_share=self.options.audit_share,
                may_omit=self.default_may_omit if omit is None else omit,
            )
        if self.options.service_tier is not None:
            self.task = Task(
                self.task.name,
                self.task.instructions,
                self.task.output,
                self.task.model,
                self.options.service_tier,
            )

    # -- what a subclass provides ---------------------------------------------------------

    local_answers_now: ClassVar[bool] = False  # True if ``local_now`` may answer

    def make_task(self) -> Task:
        raise NotImplementedError

    def local_now(self, event: _Event) -> Answer | None:
        """The local tier's answer if it can give one at once (pure, cheap), else None."""
        return None

    async def local_later(self, event: _Event) -> Answer | None:
        """The local tier's answer when it is worth awaiting (batched scoring)."""
        return None

    def from_model(self, event: _Event, output: BaseModel) -> Answer:
        fields = output.model_dump(mode="json")
        confidence = fields.get("confidence")
        return Answer(fields, float(confidence) if isinstance(confidence, int | float) else None)

    def model_text(self, event: _Event) -> str:
        return event.text()

    def alerts_for(
        self, record: SourceRecord, answer: Answer, enriched: EnrichedEvent
    ) -> list[Alert]:
        """The alerts this answer raises. Default: one per answer label in ``alert_on``,
        one incident per event."""
        return [
            self.alert(
                "label",
                "warning",
                f"label:{self.context.route}:{value}:{record.where}",
                f"{self.task.name}: {value}",
                record=record,
                enriched=enriched,
            )
            for value in answer.fields.values()
            if isinstance(value, str) and value in self.alert_labels
        ]

    def alert(
        self,
        kind: str,
        severity: Severity,
        dedup_key: str,
        reason: str,
        *,
        record: SourceRecord | None = None,
        enriched: EnrichedEvent | None = None,
        **details: Any,
    ) -> Alert:
        return Alert(
            kind=kind,
            severity=severity,
            dedup_key=dedup_key,
            reason=reason,
            route=self.context.route,
            source=record.where if record is not None else None,
            at=datetime.now(UTC),
            details=details,
            enriched=enriched,
        )

    def effective_options(self) -> dict[str, Any]:
        shown = super().effective_options()
        shown["local_threshold"] = self.threshold
        shown["alert_on"] = sorted(self.alert_labels)
        if shown.get("local_may_omit") is None:
            shown["local_may_omit"] = list(self.default_may_omit)
        return shown

    # -- the cascade ----------------------------------------------------------------------

    def decode(self, record: SourceRecord) -> tuple[Any, _Event]:
        return decode_event(
            record.value,
            self.kind,
            raw_text=self.options.raw_text,
            max_bytes=self.options.max_event_bytes,
        )

    def try_now(self, record: SourceRecord) -> Result | None:
        started = time.perf_counter()
        original, event = self.decode(record)
        answer = self.local_now(event)
        if answer is None or not self._confident(answer):
            return None
        return self._local(record, original, answer, started)

    async def handle(self, record: SourceRecord) -> Result:
        started = time.perf_counter()
        original, event = self.decode(record)
        local: Answer | None = None
        if self.local_enabled:
            local = self.local_now(event) or await self.local_later(event)
            if local is not None and self._confident(local):
                return self._local(record, original, local, started)
        decision: Decision | None = None
        if self.learner is not None:
            decision = await self.learner.decide(self.model_text(event))
            if decision.local:
                fields, confidence = self.learner.local_fields(decision)
                answer = Answer(self._fill_omitted(fields), confidence)
                return self._local(record, original, answer, started)
        redacted = self.redactor.redact(self.model_text(event))
        model = self.context.require_model(self.name)
        try:
            answer, reply, escalated = await self.consult(model, event, redacted.text)
        except SluicegateError as exc:
            if getattr(exc, "local_only", False):  # the budget is spent: any local answer
                if local is None and self.static_enabled:
                    local = self.local_now(event) or await self.local_later(event)
                if local is not None:
                    return self._local(record, original, local, started)
            raise
        if decision is not None and self.learner is not None:
            self.learner.observe(decision, answer.fields)
        return self._wrap(
            record,
            original,
            answer,
            reply=reply,
            started=started,
            redactions=redacted.counts,
            escalated=escalated,
        )

    async def consult(
        self, model: ModelPort, event: _Event, text: str
    ) -> tuple[Answer, Reply, bool]:
        """Ask the model about the (redacted) text: ``(answer, reply, escalated)``. When
        nano's confidence is below ``escalate_below``, ask ``escalate_model`` too."""
        route = self.context.route
        reply = await model.ask(self.task, text, route=route, batch=self.options.batch)
        answer = self.from_model(event, reply.output)
        big = self.options.escalate_model
        if not big or answer.confidence is None or answer.confidence >= self.options.escalate_below:
            return answer, reply, False
        task = Task(self.task.name, self.task.instructions, self.task.output, big)
        second = await model.ask(task, text, route=route, batch=False)
        return self.from_model(event, second.output), _sum(reply, second), True

    def _fill_omitted(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields the learned tier leaves empty, as the empty value of their type."""
        declared = self.task.output.model_fields
        for name, value in fields.items():
            if value is None and name in declared:
                annotation = declared[name].annotation
                origin = getattr(annotation, "__origin__", annotation)
                if origin is list:
                    fields[name] = []
                elif annotation is str:
                    fields[name] = ""
        return fields

    def _confident(self, answer: Answer) -> bool:
        return (
            self.threshold is not None
            and answer.confidence is not None
            and answer.confidence >= self.threshold
        )

    def _local(self, record: SourceRecord, original: Any, answer: Answer, started: float) -> Result:
        return self._wrap(
            record, original, answer, reply=None, started=started, redactions={}, escalated=False
        )

    def _wrap(
        self,
        record: SourceRecord,
        original: Any,
        answer: Answer,
        *,
        reply: Reply | None,
        started: float,
        redactions: Mapping[str, int],
        escalated: bool,
    ) -> Result:
        if reply is None:
            source, tier, tokens, usd = "local", "local", Tokens(), 0.0
        else:
            tier = "cache" if reply.source == "cache" else "model"
            source = "cache" if tier == "cache" else served_by(reply)
            tokens = Tokens(
                prompt=round(reply.prompt_tokens, 2),
                cached=round(reply.cached_tokens, 2),
                completion=round(reply.completion_tokens, 2),
            )
            usd = reply.usd
        enrichment = Enrichment(
            handler=self.task.name,
            route=self.context.route,
            answer=answer.fields,
            confidence=None if answer.confidence is None else round(answer.confidence, 4),
            source=source,
            tier=tier,
            escalated=escalated,
            tokens=tokens,
            cost_usd=round(usd, 9),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            redactions=dict(redactions),
        )
        enriched = EnrichedEvent(event=original, enrichment=enrichment)
        value = output_value(
            record.value, original, enrichment, self.options.output, self.options.merge_key
        )
        self.tiers[tier] += 1
        alerts = self.alerts_for(record, answer, enriched)
        if reply is not None and self.context.model is not None:
            alerts += self.context.model.take_alerts()  # e.g. this call crossed a budget line
        if not alerts:
            return Result(value)
        self.alerts_raised.update(a.kind for a in alerts)
        return Result(value, alerts=tuple(orjson.dumps(a.model_dump(mode="json")) for a in alerts))


def served_by(reply: Reply) -> str:
    """The model id to show as an answer's source: what the server says answered, so a
    simulator's answer is marked ``-simulated`` wherever it is shown, never taken for
    the real model's."""
    return reply.served_by or reply.model


def _sum(first: Reply, second: Reply) -> Reply:
    """The escalated answer, carrying the tokens and dollars of both calls."""
    return Reply(
        second.output,
        second.source,
        second.model,
        first.prompt_tokens + second.prompt_tokens,
        first.cached_tokens + second.cached_tokens,
        first.completion_tokens + second.completion_tokens,
        first.usd + second.usd,
        second.tier,
        first.calls + second.calls,
        second.served_by,
    )
