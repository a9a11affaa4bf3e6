"""The demo's sample traffic reaches real topics, bytes as shipped."""

from __future__ import annotations

import pytest

from stream import demo
from stream.config import KafkaSettings
from tests.kafkautil import consume

pytestmark = pytest.mark.kafka


def test_samples_are_well_formed() -> None:
    """Every JSON sample has its key field; logs are raw lines."""
    for stream in demo.SAMPLES:
        records = demo.sample_records(stream)
        assert len(records) >= 10
        if stream.key_field is None:
            assert all(key is None for key, _ in records)
        else:
            assert all(key for key, _ in records)


def test_demo_produces_every_sample(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sluicegate demo` creates the topics and every sample event arrives unchanged."""
    assert demo.run_demo(kafka.bootstrap_servers) == 0
    out = capsys.readouterr()
    for stream in demo.SAMPLES:
        expected = demo.sample_records(stream)
        got = consume(kafka.bootstrap_servers, stream.topic, expected=len(expected))
        assert sorted(r.value or b"" for r in got) == sorted(v for _, v in expected)
        assert f"to {stream.topic}" in out.out
