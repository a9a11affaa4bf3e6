"""The demo: sample traffic reaches real topics and the processor enriches all of it."""

from __future__ import annotations

import pytest

from schemas.dlq import DlqEnvelope
from stream.cli import demo
from stream.config import KafkaSettings
from tests.kafkautil import consume
from tests.stream.harness import source_of

pytestmark = pytest.mark.kafka


def test_samples_are_well_formed() -> None:
    """Every JSON sample but the deliberately truncated one has its key; logs are raw."""
    for stream in demo.SAMPLES:
        records = demo.sample_records(stream)
        assert len(records) >= 10
        keyless = [v for k, v in records if k is None]
        if stream.key_field is None:
            assert len(keyless) == len(records)
        else:
            assert len(keyless) <= 1


def test_calls_are_whole_requests() -> None:
    """The calls column adds events' shares of batched requests: shown as an integer."""
    assert demo._calls(6.999999999) == "7"
    assert demo._calls(1234.0000001) == "1,234"


def test_demo_enriches_every_sample(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sluicegate demo` produces the samples, and each one ends enriched or, for the
    truncated review, in the DLQ with its bytes intact."""
    assert demo.run_demo(kafka.bootstrap_servers) == 0
    out = capsys.readouterr().out
    assert "nothing lost" in out
    # Honest about the simulator, and about what is left running.
    assert "gpt-5.4-nano-simulated" in out
    assert "still running" in out
    assert "make kafka-down" in out
    examples = out.split("enriched events beside their inputs")[1].split("per route")[0]
    assert "│ reviews" in examples
    assert "│ sentiment " not in examples
    dead = consume(kafka.bootstrap_servers, "sluicegate.dlq", 1)
    envelope = DlqEnvelope.from_json(dead[0].value or b"")
    assert envelope.source_topic == "demo.reviews"
    assert envelope.error_class == "BadInput"
    for stream in demo.SAMPLES:
        sent = demo.sample_records(stream)
        got = consume(kafka.bootstrap_servers, stream.topic, len(sent))
        assert sorted(r.value or b"" for r in got) == sorted(v for _, v in sent)
        broken = 1 if stream.topic == envelope.source_topic else 0
        enriched = consume(kafka.bootstrap_servers, f"{stream.topic}.enriched", None)
        assert len({source_of(r) for r in enriched}) == len(sent) - broken
