"""``sluicegate produce`` and ``sluicegate tail`` against the real broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream.cli import commands as cli
from stream.cli.produce import describe, read_records
from stream.config import KafkaSettings
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce

pytestmark = pytest.mark.kafka


def test_produce_sends_every_record_with_its_key(
    kafka: KafkaSettings, make_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = make_topic("produced", 2)
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(orjson.dumps({"id": i, "sku": f"S{i % 3}"}).decode() + "\n"
                            for i in range(10)))  # fmt: skip
    code = cli.main(["produce", topic, "--file", str(path), "--key-field", "sku",
                     "--repeat", "2", "--rate", "500",
                     "--bootstrap-servers", kafka.bootstrap_servers])  # fmt: skip
    assert code == cli.EXIT_OK
    got = consume(kafka.bootstrap_servers, topic, 20)
    assert len(got) == 20
    assert {r.key for r in got} == {b"S0", b"S1", b"S2"}


def test_produce_names_the_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ok": 1}\n{"broken": \n')
    assert cli.main(["produce", "t", "--file", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "line 2 is not JSON" in err
    assert "--bad-lines send" in err


SAMPLE = Path(__file__).resolve().parents[2] / "stream" / "samples" / "reviews.jsonl"


def test_bad_lines_can_be_sent_or_skipped(
    kafka: KafkaSettings, make_topic: TopicFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The project's own sample (a deliberately truncated line) goes out whole with
    --bad-lines send, and without that line, counted, with --bad-lines skip."""
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    bad = [line for line in lines if not _is_json(line)]
    assert len(bad) == 1
    sent, skipped = make_topic("sent"), make_topic("skipped")
    common = ["--file", str(SAMPLE), "--bootstrap-servers", kafka.bootstrap_servers]
    assert cli.main(["produce", sent, *common, "--bad-lines", "send"]) == cli.EXIT_OK
    assert sorted(r.value or b"" for r in consume(kafka.bootstrap_servers, sent, len(lines))) == (
        sorted(lines)
    )
    assert cli.main(["produce", skipped, *common, "--bad-lines", "skip"]) == cli.EXIT_OK
    assert "skipped 1 line" in capsys.readouterr().err
    got = consume(kafka.bootstrap_servers, skipped, None, timeout=5)
    assert sorted(r.value or b"" for r in got) == sorted(set(lines) - set(bad))


def _is_json(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


def test_csv_rows_become_json_objects(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("text,label\nnice,positive\n")
    ((key, value),) = read_records(path)
    assert key is None
    assert orjson.loads(value) == {"text": "nice", "label": "positive"}


def test_tail_prints_enriched_events_readably(
    kafka: KafkaSettings, make_topic: TopicFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = make_topic("enriched")
    enriched = {"event": {"text": "great"}, "enrichment": {
        "handler": "sentiment", "route": "r", "answer": {"sentiment": "positive"},
        "source": "local", "tier": "local", "latency_ms": 0.1, "cost_usd": 0.0}}  # fmt: skip
    produce(kafka.bootstrap_servers, topic, [(None, orjson.dumps(enriched)), (None, b"plain")])
    code = cli.main(["tail", topic, "--from-beginning", "-n", "2",
                     "--bootstrap-servers", kafka.bootstrap_servers])  # fmt: skip
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert "[local:local] sentiment {'sentiment': 'positive'}" in out[0]
    assert out[0].startswith(f"{topic}[0]@0 ")  # the topic, not only partition@offset
    assert out[1].endswith("plain")


def test_tail_raw_prints_values_unchanged(
    kafka: KafkaSettings, make_topic: TopicFactory, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`tail --raw` writes each value as it is, one a line, nothing added (for jq)."""
    topic = make_topic("raw")
    values = [orjson.dumps({"n": 123456789012345678901234567890 % 97, "s": "é"}), b'{"a": 1e-400}']
    produce(kafka.bootstrap_servers, topic, [(None, v) for v in values])
    code = cli.main(["tail", topic, "--from-beginning", "-n", "2", "--raw",
                     "--bootstrap-servers", kafka.bootstrap_servers])  # fmt: skip
    assert code == cli.EXIT_OK
    assert capsysbinary.readouterr().out == b"".join(v + b"\n" for v in values)


def test_tail_names_a_missing_topic(
    kafka: KafkaSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["tail", "no-such-topic-here", "--bootstrap-servers", kafka.bootstrap_servers])
    assert code == cli.EXIT_CONFIG
    assert "does not exist" in capsys.readouterr().err


def test_describe_knows_alerts_and_dead_letters() -> None:
    alert = {"kind": "moderation.violates", "severity": "critical", "dedup_key": "m:p:4",
             "reason": "moderation: violates", "source": "posts[0]@4", "route": "p"}  # fmt: skip
    assert describe(orjson.dumps(alert)) == (
        "ALERT critical moderation.violates posts[0]@4: moderation: violates"
    )
    dead = {"error_class": "BadInput", "stage": "decode", "source_topic": "t",
            "source_partition": 0, "source_offset": 7, "error_message": "not JSON"}  # fmt: skip
    assert describe(orjson.dumps(dead)) == "DLQ t[0]@7 BadInput (decode): not JSON"
