"""The built-in handlers against the simulator, through the real SDK over HTTP.

Each test builds handlers from raw route options (as a config file would), hands them
records and reads the enriched events they make: the cascade (local answers skip the
model), redaction before the model, escalation, alerts, declared tasks and bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from handlers.base import Handler, HandlerContext, Result
from handlers.enrich import EnrichingHandler
from handlers.registry import HANDLERS
from schemas.enriched import Alert, EnrichedEvent
from schemas.errors import BadInput, SluicegateError
from schemas.records import SourceRecord
from stream.config import Settings, load
from stream.model.service import ModelService
from tests.simutil import sim_stats

pytestmark = pytest.mark.asyncio

TICKETS = {
    "name": "ticket-routing",
    "instruction": "Route each support ticket to the team that should answer it.",
    "text_field": "body",
    "schema": {
        "type": "object",
        "properties": {
            "category": {
                "enum": ["billing", "technical_support", "cancellation", "feature_request",
                         "general_inquiry"]
            },
            "urgent": {"type": "boolean"},
            "summary": {"type": "string", "maxLength": 120},
        },
        "required": ["category", "urgent", "summary"],
    },
}  # fmt: skip


async def chat_calls(url: str) -> int:
    return int((await sim_stats(url))["by_endpoint"].get("POST /v1/chat/completions", 0))


def build(kind: str, model: ModelService, /, **options: Any) -> Handler:
    return HANDLERS[kind].from_options(options, HandlerContext("r", model))


def record(value: object, offset: int = 0) -> SourceRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return SourceRecord("reviews", 0, offset, b"k", raw)


async def enrich(handler: Handler, rec: SourceRecord) -> tuple[EnrichedEvent, Result]:
    result = handler.try_now(rec) if handler.answers_now else None
    if result is None:
        result = await handler.handle(rec)
    assert result.value is not None
    return EnrichedEvent.model_validate_json(result.value), result


async def test_static_tier_does_not_answer_alone_by_default(
    model: ModelService, simulator: str
) -> None:
    """VADER's threshold was tuned offline and does not carry over: by default a clear
    case goes to the model (and teaches the learned tier) instead."""
    handler = build("sentiment", model)
    assert isinstance(handler, EnrichingHandler)
    assert not handler.local_enabled
    clear = {"review_id": "r1", "text": "Wonderful, excellent, I love it. Great value!"}
    enriched, _ = await enrich(handler, record(clear))
    assert enriched.enrichment.tier == "model"
    assert await chat_calls(simulator) == 1
    assert handler.learner is not None
    await handler.learner.drain()
    assert handler.learner.stats.trained == 1


async def test_sentiment_cascade_answers_clear_cases_locally_with_the_static_tier(
    model: ModelService, simulator: str
) -> None:
    handler = build("sentiment", model, static_tier=True)
    clear = {"review_id": "r1", "text": "Wonderful, excellent, I love it. Great value!",
             "stars": 5}  # fmt: skip
    enriched, _ = await enrich(handler, record(clear))
    assert enriched.event == clear  # the original, unchanged, unknown fields included
    e = enriched.enrichment
    assert (e.tier, e.source, e.cost_usd, e.answer["sentiment"]) == (
        "local",
        "local",
        0,
        "positive",
    )
    assert e.confidence is not None
    assert e.confidence >= 0.9
    assert await chat_calls(simulator) == 0

    vague = {"review_id": "r2", "text": "It arrived on Tuesday in a brown box."}
    enriched, _ = await enrich(handler, record(vague))
    e = enriched.enrichment
    assert (e.tier, e.source) == ("model", "gpt-5.4-nano-simulated")  # marked as such
    assert e.answer["sentiment"] in {"positive", "neutral", "negative", "frustrated"}
    assert e.answer["intent"] in {"purchase", "compare", "support", "return", "other"}
    assert e.tokens.prompt > 0
    assert e.cost_usd > 0
    assert await chat_calls(simulator) == 1


async def test_local_tier_off_sends_everything_to_the_model(model: ModelService) -> None:
    handler = build("sentiment", model, local_tier=False)
    assert not handler.answers_now
    enriched, _ = await enrich(handler, record({"text": "Wonderful, excellent, I love it!"}))
    assert enriched.enrichment.tier == "model"


async def test_pii_is_redacted_before_the_model_and_counted(model: ModelService) -> None:
    handler = build("sentiment", model, local_tier=False)
    text = "Write to jane.doe@example.com or call +1 415-555-0132 about my order."
    enriched, _ = await enrich(handler, record({"text": text}))
    assert enriched.enrichment.redactions == {"email": 1, "phone": 1}
    assert enriched.event["text"] == text  # the published original keeps its text
    off = build("sentiment", model, local_tier=False, redact=[])
    enriched, _ = await enrich(off, record({"text": text}))
    assert enriched.enrichment.redactions == {}


async def test_cache_hits_are_marked_and_free(model: ModelService) -> None:
    handler = build("sentiment", model, local_tier=False)
    first, _ = await enrich(handler, record({"text": "The box was blue."}))
    again, _ = await enrich(handler, record({"text": " The  box was\nblue. "}, 1))
    assert first.enrichment.tier == "model"
    assert (again.enrichment.tier, again.enrichment.source) == ("cache", "cache")
    assert again.enrichment.cost_usd == 0
    assert again.enrichment.answer == first.enrichment.answer


async def test_escalation_asks_the_larger_model_when_nano_hesitates(
    model: ModelService,
) -> None:
    # escalate_below=1: every nano answer counts as hesitant, so the larger model answers.
    handler = build("sentiment", model, local_tier=False, escalate_model="gpt-5.4-mini",
                    escalate_below=1.0)  # fmt: skip
    enriched, _ = await enrich(handler, record({"text": "Not sure how I feel about it."}))
    e = enriched.enrichment
    assert e.escalated
    assert e.source == "gpt-5.4-mini-simulated"


async def test_moderation_local_safe_model_violates_and_alerts(
    model: ModelService, simulator: str
) -> None:
    handler = build("moderation", model, policy=["spam"], static_tier=True)
    clean, result = await enrich(handler, record({"post_id": 1, "text": "Lovely sunset today."}))
    assert (clean.enrichment.tier, clean.enrichment.answer["action"]) == ("local", "safe")
    assert result.alerts == ()
    assert await chat_calls(simulator) == 0

    rude = {"post_id": 2, "text": "You are a worthless idiot, shut up, loser."}
    enriched, result = await enrich(handler, record(rude, 1))
    answer = enriched.enrichment.answer
    assert enriched.enrichment.tier == "model"
    assert set(answer["categories"]) >= {"harassment", "self-harm/intent", "sexual/minors"}
    assert set(answer["policy"]) == {"spam"}
    if answer["action"] == "violates":
        (alert,) = result.alerts
        parsed = Alert.model_validate_json(alert)
        assert parsed.source == "reviews[0]@1"
        assert parsed.enriched == enriched
    else:
        assert result.alerts == ()


async def test_moderation_endpoint_decides_clear_cases_without_nano(
    model: ModelService, simulator: str
) -> None:
    handler = build("moderation", model, local_tier=False, moderations_endpoint=True)
    enriched, _ = await enrich(handler, record({"text": "What a lovely garden you have."}))
    e = enriched.enrichment
    assert e.answer["action"] == "safe"
    assert e.tokens.prompt == 0
    assert "moderation" in e.source
    assert await chat_calls(simulator) == 0
    assert model.moderations == 1


async def test_declared_task_answers_with_its_own_schema(model: ModelService) -> None:
    handler = build("task", model, **TICKETS)
    ticket = {"id": 7, "body": "I was charged twice for my plan this month, please refund."}
    enriched, _ = await enrich(handler, record(ticket))
    e = enriched.enrichment
    assert e.handler == "ticket-routing"
    assert e.tier == "model"
    assert e.answer["category"] in TICKETS["schema"]["properties"]["category"]["enum"]  # type: ignore[index]
    assert isinstance(e.answer["urgent"], bool)


async def test_declared_task_takes_a_pydantic_model_path(model: ModelService) -> None:
    handler = build("task", model, name="feel", instruction="Label the feeling.",
                    output_model="schemas.outputs:SentimentAnswer")  # fmt: skip
    enriched, _ = await enrich(handler, record("plain text is accepted too"))
    assert enriched.event == "plain text is accepted too"
    assert enriched.enrichment.answer["sentiment"] in {"positive", "neutral", "negative",
                                                       "frustrated"}  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schema": {"type": "array"}}, "top level must be"),
        ({"schema": {"type": "object", "properties": {"x": {"type": "date"}}}}, "x: type 'date'"),
        ({"schema": {"type": "object", "properties": {"x": {"anyOf": []}}}}, "unsupported"),
        ({"output_model": "nowhere.at_all:Model"}, "cannot import"),
        ({}, "exactly one of"),
    ],
)
async def test_declared_task_refuses_bad_schemas(
    model: ModelService, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        build("task", model, name="t", instruction="do it", **options)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"\xff\xfe", "neither JSON nor UTF-8"),
        (b"[1, 2]", "JSON list"),
        (b'{"stars": 5}', "Review: text: Field required"),
        (b'"   "', "empty text"),
    ],
)
async def test_bad_input_is_a_bad_input_error(
    model: ModelService, value: bytes, message: str
) -> None:
    handler = build("sentiment", model, raw_text=True)
    with pytest.raises(BadInput, match=message):
        await handler.handle(record(value))


async def test_shipped_task_examples_run_as_declared(model: ModelService) -> None:
    """examples/tasks.toml: ticket routing and invoice extraction, with no new code."""
    settings = load(Path(__file__).parents[2] / "examples" / "tasks.toml")
    routes = {r.name: r for r in settings.routes}
    tickets = build("task", model, **routes["tickets"].options)
    enriched, _ = await enrich(tickets, record({"body": "Please cancel my plan today."}))
    categories = TICKETS["schema"]["properties"]["category"]["enum"]  # type: ignore[index]
    assert enriched.enrichment.answer["category"] in categories
    invoices = build("task", model, **routes["invoices"].options)
    text = ("INVOICE 2291 from Acme Tools Ltd, 2026-10-02. 3 x hammer at 12.50 = 37.50. "
            "Total due 37.50 EUR by 2026-11-01.")  # fmt: skip
    enriched, _ = await enrich(invoices, record({"text": text}))
    answer = enriched.enrichment.answer
    assert set(answer) == {"vendor_name", "invoice_date", "total_amount", "currency",
                           "line_items", "payment_due"}  # fmt: skip
    assert all(set(item) == {"description", "quantity", "unit_price", "amount"}
               for item in answer["line_items"])  # fmt: skip


async def test_json_events_refuse_raw_text_unless_asked(model: ModelService) -> None:
    """A review topic expects JSON: a truncated JSON record is bad input, not a text."""
    handler = build("sentiment", model)
    with pytest.raises(BadInput, match="not valid JSON"):
        await handler.handle(record(b'{"text": "cut off'))


async def test_spent_budget_under_local_only_answers_with_the_local_tier(simulator: str) -> None:
    """budget.policy = local-only: once the day's dollars are spent, events the local
    tier can answer at all get its answer (whatever its confidence) instead of waiting."""
    settings = Settings(
        model={"base_url": simulator, "api_key": "sim", "batch_wait_ms": 1},
        budget={"usd_per_day": 1e-9, "policy": "local-only"},
    )
    service = ModelService(settings)
    try:
        handler = build("sentiment", service, local_threshold=1.0)  # nothing is sure enough
        first, result = await enrich(handler, record({"text": "Nice enough, I guess it is good."}))
        assert first.enrichment.tier == "model"  # this call spends the budget
        assert service.meter.exhausted
        # Its event carries the budget alerts it raised: 50%, 80% and 100%, once each today.
        alerts = [Alert.model_validate_json(a) for a in result.alerts]
        assert [(a.kind, a.severity) for a in alerts] == [("budget.threshold", "warning")] * 2 + [
            ("budget.threshold", "critical")]  # fmt: skip
        assert len({a.dedup_key for a in alerts}) == 3
        later, result = await enrich(handler, record({"text": "Great product, I love it."}, 1))
        assert later.enrichment.tier == "local"
        assert result.alerts == ()
        assert later.enrichment.answer["sentiment"] == "positive"
        # No local answer at all: the budget error reaches the runtime (it retries later).
        with pytest.raises(SluicegateError, match="budget"):
            await handler.handle(record({"text": "It is a chair."}, 2))
    finally:
        await service.aclose()
