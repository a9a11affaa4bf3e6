"""Bad input, generated: every case of every input kind is refused with a reason that
names the problem; through the runtime, each lands in the DLQ with its bytes intact while
the good events around it are enriched."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from handlers.base import HandlerContext
from handlers.registry import HANDLERS
from schemas.dlq import DlqEnvelope
from schemas.enriched import EnrichedEvent
from schemas.errors import BadInput
from schemas.records import SourceRecord
from stream.config import KafkaSettings
from stream.model.service import ModelService
from stream.runtime.processor import Processor
from tests.conftest import TopicFactory
from tests.handlers.corpus import TEXT_FIELD, cases
from tests.kafkautil import consume, produce
from tests.stream.harness import all_handled, run_until, settings_for, source_of

ROUTES = {  # input kind -> (handler, options)
    "review": ("sentiment", {}),
    "post": ("moderation", {}),
    "log": ("logs", {"raw_text": False}),  # JSON from a log shipper
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(ROUTES))
async def test_every_case_is_refused_with_its_reason(kind: str) -> None:
    name, options = ROUTES[kind]
    handler = HANDLERS[name].from_options(options, HandlerContext("r", None))
    corpus = list(cases(kind))
    assert len(corpus) >= 200
    for case in corpus:
        record = SourceRecord("t", 0, 0, None, case.value, case.headers)
        with pytest.raises(BadInput) as refused:
            await handler.handle(record)
        assert case.expect in str(refused.value), (case.name, str(refused.value))


@pytest.mark.asyncio
async def test_raw_log_lines_that_are_not_text_are_refused() -> None:
    handler = HANDLERS["logs"].from_options({}, HandlerContext("r", None))
    for value, expect in ((b"\xff\xfe\x00 broken", "neither JSON nor UTF-8"),
                          (b"   \n", "empty text"), (b"[1, 2]", "JSON list")):  # fmt: skip
        with pytest.raises(BadInput, match=expect):
            await handler.handle(SourceRecord("t", 0, 0, None, value))


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_the_runtime_dead_letters_every_case_and_enriches_the_rest(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    limit = 50_000  # max_event_bytes: the too-large cases stay well under Kafka's 1 MB
    routes, sent, bad = [], {}, {}
    for kind, (name, options) in ROUTES.items():
        src, out = make_topic(f"{kind}-in", 2), make_topic(f"{kind}-out")
        corpus = list(cases(kind, per_class=15, max_bytes=limit))
        records: list[tuple[bytes | None, bytes]] = []
        for i, case in enumerate(corpus):  # a good event after every bad one
            records.append((b"k%d" % i, case.value or b""))
            good = {TEXT_FIELD[kind]: f"All fine here, event {i}.", "id": i}
            records.append((b"k%d" % i, orjson.dumps(good)))
        produce(kafka.bootstrap_servers, src, [r for r in records if r[1]])
        sent[kind] = (src, out, sum(1 for r in records if r[1]))
        bad[src] = Counter(c.value for c in corpus if c.value)
        routes.append({"name": kind, "input_topics": [src], "output_topic": out,
                       "handler": name, "ordering": "unordered",
                       "options": {**options, "max_event_bytes": limit}})  # fmt: skip
    dlq = make_topic("dlq")
    settings = settings_for(
        kafka, routes,
        dlq={"topic": dlq, "max_consecutive": 10_000, "max_ratio": 1.0},
        model={"base_url": simulator, "api_key": "sim", "batch_wait_ms": 2},
    )  # fmt: skip
    service = ModelService(settings)
    processor = Processor(settings, model=service, pause_while=[service.should_pause])
    total = sum(n for _, _, n in sent.values())
    try:
        await run_until(processor, all_handled(total), limit_s=110)
    finally:
        await service.aclose()
    envelopes = [DlqEnvelope.model_validate_json(r.value or b"")
                 for r in consume(kafka.bootstrap_servers, dlq, None, idle_s=2)]  # fmt: skip
    got: dict[str, Counter[bytes]] = {src: Counter() for src in bad}
    for e in envelopes:
        assert e.stage == "decode"
        assert e.error_class == "BadInput"
        got[e.source_topic][e.value or b""] += 1
    assert got == bad  # every bad case, its bytes exactly as sent, and nothing else
    for kind, (_, out, n) in sent.items():
        outputs = consume(kafka.bootstrap_servers, out, None, idle_s=2)
        enriched = {source_of(r): EnrichedEvent.model_validate_json(r.value or b"")
                    for r in outputs}  # fmt: skip
        assert len(enriched) == n - sum(bad[sent[kind][0]].values()), kind
