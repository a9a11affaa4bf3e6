"""The built-in handlers on the runtime: real broker, real SDK over HTTP, the simulator.

Routes are declared the way a config file declares them; every input offset ends as an
enriched event (valid against the enriched schema) or a DLQ record, and violating posts
also reach the alerts topic.
"""

from __future__ import annotations

import orjson
import pytest

from schemas.dlq import DlqEnvelope
from schemas.enriched import Alert, EnrichedEvent
from stream.config import KafkaSettings
from stream.model.service import ModelService
from stream.runtime.processor import Processor
from tests.conftest import TopicFactory
from tests.handlers.test_enrich_handlers import TICKETS
from tests.kafkautil import consume, produce
from tests.stream.harness import all_handled, run_until, settings_for, source_of

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]

REVIEWS = [
    "Excellent quality, I love it, works great!",
    "It arrived on a Tuesday.",
    "Third time asking: the charger STILL doesn't work, nobody answers.",
    "Is this better than the older model?",
]
LOGS = [
    "2026-11-24 09:00:{0:02d},000 INFO  api: request {0} served in {0}5 ms",
    "2026-11-24 09:00:{0:02d},100 ERROR db: query {0} timed out after 30{0} ms",
    "2026-11-24 09:00:{0:02d},200 WARN  cache: evicted {0}00 keys",
]
POSTS = [
    "Lovely weather for a walk by the river.",
    "You are a worthless idiot and a pathetic loser, shut up.",
    "I want to die, I can't go on.",
    "Selling guns cheap, my email is someone@example.com, write me!",
]


async def test_sentiment_and_moderation_routes_end_to_end(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator: str
) -> None:
    reviews, posts, logs = make_topic("reviews", 2), make_topic("posts", 2), make_topic("logs")
    out_r, out_p, out_l = make_topic("reviews-out"), make_topic("posts-out"), make_topic("logs-out")
    tickets, out_t = make_topic("tickets"), make_topic("tickets-out")
    dlq, alerts = make_topic("dlq"), make_topic("alerts")
    n = 24
    produce(kafka.bootstrap_servers, reviews,
            [(b"%d" % i, orjson.dumps({"review_id": i, "text": f"{REVIEWS[i % 4]} ({i})"}))
             for i in range(n)] + [(b"bad", b"\xff not utf-8")])  # fmt: skip
    produce(
        kafka.bootstrap_servers,
        posts,
        [(b"%d" % i, orjson.dumps({"post_id": i, "text": POSTS[i % 4]})) for i in range(n)],
    )
    produce(
        kafka.bootstrap_servers, logs, [(None, LOGS[i % 3].format(i).encode()) for i in range(n)]
    )
    ticket = [orjson.dumps({"id": i, "body": f"I was charged twice ({i})"}) for i in range(n)]
    produce(kafka.bootstrap_servers, tickets, [(None, value) for value in ticket])
    settings = settings_for(
        kafka,
        [{"name": "reviews", "input_topics": [reviews], "output_topic": out_r,
          "handler": "sentiment", "ordering": "unordered", "options": {"static_tier": True}},
         {"name": "posts", "input_topics": [posts], "output_topic": out_p,
          "handler": "moderation", "ordering": "key", "options": {"policy": ["spam"]}},
         {"name": "logs", "input_topics": [logs], "output_topic": out_l,
          "handler": "logs", "ordering": "partition"},
         {"name": "tickets", "input_topics": [tickets], "output_topic": out_t,
          "handler": "task", "ordering": "unordered", "options": TICKETS}],
        dlq={"topic": dlq, "max_consecutive": 100, "max_ratio": 1.0},
        alerts={"topic": alerts},
        model={"base_url": simulator, "api_key": "sim", "batch_wait_ms": 2},
    )  # fmt: skip
    service = ModelService(settings)
    processor = Processor(settings, model=service, pause_while=[service.should_pause])
    try:
        await run_until(processor, all_handled(4 * n + 1), limit_s=90)
    finally:
        await service.aclose()

    enriched = {}
    for topic in (out_r, out_p, out_l, out_t):
        for rec in consume(kafka.bootstrap_servers, topic, None, idle_s=2):
            enriched[source_of(rec)] = EnrichedEvent.model_validate_json(rec.value or b"")
    (dead,) = consume(kafka.bootstrap_servers, dlq, 1)
    envelope = DlqEnvelope.model_validate_json(dead.value or b"")
    assert envelope.value == b"\xff not utf-8"
    assert envelope.stage == "decode"
    assert len(enriched) == 4 * n  # every other offset became an enriched event

    by_route: dict[str, list[EnrichedEvent]] = {
        "reviews": [],
        "posts": [],
        "logs": [],
        "tickets": [],
    }
    for event in enriched.values():
        by_route[event.enrichment.route].append(event)
    tiers = {e.enrichment.tier for e in by_route["reviews"]}
    assert "local" in tiers
    assert "model" in tiers
    assert all(e.enrichment.handler == "sentiment" for e in by_route["reviews"])
    assert any(e.enrichment.redactions.get("email") for e in by_route["posts"])
    violating = [(src, e) for src, e in enriched.items() if e.enrichment.route == "posts"
                 and e.enrichment.answer["action"] == "violates"]  # fmt: skip
    assert violating, "the insult should violate"
    published = [Alert.model_validate_json(r.value or b"")
                 for r in consume(kafka.bootstrap_servers, alerts, None, idle_s=2)]  # fmt: skip
    assert {a.source for a in published} == {f"{t}[{p}]@{o}" for (t, p, o), _ in violating}
    assert all(a.kind == "moderation.violates" for a in published)
    assert all(a.reason.startswith("moderation: violates (") for a in published)
    # One incident per post: the dedup key names the post, not the record.
    assert {a.dedup_key for a in published} == {
        f"moderation:posts:{e.event['post_id']}" for _, e in violating}  # fmt: skip
    assert service.meter.tallies  # model calls were metered per handler and route
    categories = TICKETS["schema"]["properties"]["category"]["enum"]  # type: ignore[index]
    assert all(e.enrichment.answer["category"] in categories for e in by_route["tickets"])
    templates = {e.enrichment.answer["template_id"] for e in by_route["logs"]}
    assert len(templates) == 3
    model_answered = [e for e in by_route["logs"] if e.enrichment.tier == "model"]
    assert len(model_answered) == 3  # once per template; the other lines answered locally
