"""The learned tier's warm state in a compacted Kafka topic: real broker, and for the
restart, the real processor with the simulator in teacher mode over HTTP."""

from __future__ import annotations

import asyncio
import csv
import logging
import zlib
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from schemas.enriched import EnrichedEvent
from schemas.outputs import SentimentAnswer
from stream.config import KafkaSettings
from stream.learn.snapshot import (
    SnapshotWriter,
    StudentSnapshots,
    calibration_of,
    decode,
    encode,
    topic_for,
)
from stream.learn.student import features
from stream.learn.tier import LearnedTier, choose_threshold
from stream.model.service import ModelService
from stream.runtime.processor import Processor
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce
from tests.learn.synth import reviews
from tests.stream.harness import all_handled, run_until, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio]
OMIT = ("phrases", "intent")


def answer(label: str) -> dict[str, object]:
    return {"sentiment": label, "intent": "other", "confidence": 0.9, "phrases": []}


async def trained_tier(n: int = 400) -> LearnedTier:
    """A tier that learned ``n`` answers and proved a threshold on them."""
    tier = LearnedTier(SentimentAnswer, may_omit=OMIT, audit_share=0.2)
    data = reviews(n, seed=3)
    for begin in range(0, n, 50):
        chunk = data[begin : begin + 50]
        decisions = [await tier.decide(text) for text, _ in chunk]
        for decision, (_, label) in zip(decisions, chunk, strict=True):
            if not decision.local:
                tier.observe(decision, answer(label))
        await tier.drain()
    return tier


async def test_a_snapshot_round_trips_through_a_compacted_topic(kafka: KafkaSettings) -> None:
    tier = await trained_tier()
    assert tier.stats.threshold is not None
    snapshots = StudentSnapshots(kafka, {"reviews": (tier, "sentiment")}, interval_s=60)
    await asyncio.to_thread(snapshots.load)  # creates the topic; nothing to load yet
    assert snapshots.loaded == []
    assert await snapshots.save() == ["reviews"]
    assert await snapshots.save() == []  # nothing new learned: not written again

    topic = topic_for(kafka.group_id, "reviews")
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(30)
    assert config["cleanup.policy"].value == "compact"

    fresh = LearnedTier(SentimentAnswer, may_omit=OMIT, audit_share=0.2)
    restarted = StudentSnapshots(kafka, {"reviews": (fresh, "sentiment")}, interval_s=60)
    assert await asyncio.to_thread(restarted.load) == ["reviews"]
    assert fresh.student.trained == tier.student.trained
    # The threshold is chosen again from the comparisons kept, the latest included.
    assert list(fresh.pairs) == list(tier.pairs)
    expected, _ = choose_threshold(list(tier.pairs), tier.target, tier.min_support)
    assert fresh.stats.threshold == expected is not None
    texts = [t for t, _ in reviews(40, seed=9)]
    rows = features(texts)
    before, after = tier.student.guess(rows), fresh.student.guess(rows)
    for a, b in zip(before, after, strict=True):
        assert a.fields == b.fields
        assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
    # The restored student goes on learning.
    fresh.student.learn(rows[:2], [answer("positive"), answer("negative")])
    assert fresh.student.trained == tier.student.trained + 2


async def test_an_incompatible_snapshot_is_refused_and_the_route_starts_cold(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    tier = await trained_tier(200)
    body = decode(encode(tier, calibration_of(tier), "reviews", "sentiment"))
    body["version"] = 99
    topic = topic_for(kafka.group_id, "reviews")
    fresh = LearnedTier(SentimentAnswer, may_omit=OMIT)
    snapshots = StudentSnapshots(kafka, {"reviews": (fresh, "sentiment")}, interval_s=60)
    await asyncio.to_thread(snapshots.load)  # creates the topic
    SnapshotWriter(kafka).write(topic, "reviews", zlib.compress(orjson.dumps(body)))
    with caplog.at_level(logging.WARNING, logger="sluicegate.learn"):
        assert await asyncio.to_thread(snapshots.load) == []
    assert "snapshot refused" in caplog.text
    assert "version 99" in caplog.text
    assert fresh.student.trained == 0
    assert fresh.stats.threshold is None
    # Another route's fields: refused as well, naming them.
    body["version"] = 1
    body["may_omit"] = ["phrases"]
    SnapshotWriter(kafka).write(topic, "reviews", zlib.compress(orjson.dumps(body)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sluicegate.learn"):
        assert await asyncio.to_thread(snapshots.load) == []
    assert "fields left empty" in caplog.text


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label_text"])
        writer.writerows(rows)
    return path


async def test_a_restarted_processor_answers_locally_from_its_first_events(
    kafka: KafkaSettings, make_topic: TopicFactory, tmp_path: Path
) -> None:
    # What an earlier processor of the route left in its topic: a student that learned
    # 400 answers and proved a threshold (written as a processor writes it).
    earlier = await trained_tier(400)
    assert earlier.stats.threshold is not None
    before = StudentSnapshots(kafka, {"reviews": (earlier, "sentiment")}, interval_s=60)
    await asyncio.to_thread(before.load)
    assert await before.save() == ["reviews"]

    data = reviews(60, seed=6)
    labelled = write_csv(tmp_path / "reviews.csv", data)
    topic, out, dlq = make_topic("in"), make_topic("out"), make_topic("dlq")
    produce(kafka.bootstrap_servers, topic, [(None, orjson.dumps({"text": t})) for t, _ in data])
    sim = SimulatorSettings(port=0, latency_median_ms=5, seed=11, teacher=str(labelled),
                            teacher_noise=0.0)  # fmt: skip
    async with running_simulator(sim) as url:
        settings = settings_for(
            kafka,
            [{"name": "reviews", "input_topics": [topic], "output_topic": out,
              "handler": "sentiment", "ordering": "unordered",
              "options": {"local_may_omit": list(OMIT), "audit_share": 0.2}}],
            dlq={"topic": dlq},
            model={"base_url": url, "api_key": "sim", "batch_wait_ms": 2},
        )  # fmt: skip
        service = ModelService(settings)
        processor = Processor(settings, model=service)  # a new process: a cold handler
        tier = processor.snapshots.tiers["reviews"][0]
        assert tier.student.trained == 0
        try:
            await run_until(processor, all_handled(60), limit_s=90)
        finally:
            await service.aclose()
    assert processor.snapshots.loaded == ["reviews"]
    events = [EnrichedEvent.model_validate_json(r.value or b"")
              for r in consume(kafka.bootstrap_servers, out, None, idle_s=2)]  # fmt: skip
    assert len(events) == 60
    local = [e for e in events if e.enrichment.tier == "local"]
    assert len(local) >= 20  # warm from the start: a cold student answers none of 60
    truth = dict(data)
    assert all(e.enrichment.answer["sentiment"] == truth[e.event["text"]] for e in local)
    # At shutdown it wrote what it learned since: the next start gets that too.
    deferred = 60 - len(local)
    after = LearnedTier(SentimentAnswer, may_omit=OMIT)
    again = StudentSnapshots(kafka, {"reviews": (after, "sentiment")}, interval_s=60)
    assert await asyncio.to_thread(again.load) == ["reviews"]
    assert after.student.trained == earlier.student.trained + deferred
