"""`sluicegate dlq inspect|replay` against a real broker: filters, dry run, exact bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from schemas.dlq import DlqEnvelope
from stream.cli import commands as cli
from stream.cli.dlq import escape, preview
from stream.dlq import dead_letter
from stream.errors import BadInput
from stream.records import OutRecord, SourceRecord
from tests.conftest import TopicFactory
from tests.kafkautil import consume

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Dlq:
    bootstrap: str
    topic: str
    source_topic: str
    originals: tuple[SourceRecord, ...]


def _produce(bootstrap: str, records: Sequence[OutRecord]) -> None:
    """Produce records with their headers and fail unless every one is acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    errors: list[object] = []
    for r in records:
        headers: list[tuple[str, str | bytes | None]] = list(r.headers)
        producer.produce(
            r.topic, r.value, r.key, headers=headers, on_delivery=lambda e, _m: errors.append(e)
        )
    assert producer.flush(30) == 0
    assert [e for e in errors if e is not None] == []


@pytest.fixture
def dlq(kafka_bootstrap: str, make_topic: TopicFactory, monkeypatch: pytest.MonkeyPatch) -> Dlq:
    """A DLQ topic holding three envelopes (two routes) and one record that is not one;
    the CLI is pointed at the session broker through the environment."""
    monkeypatch.delenv("SLUICEGATE_CONFIG", raising=False)
    monkeypatch.setenv("SLUICEGATE_KAFKA__BOOTSTRAP_SERVERS", kafka_bootstrap)
    topic, source = make_topic("dlq"), make_topic("src")
    originals = (
        SourceRecord(source, 0, 7, b"k1", b"\xff\xfe{\x00bad", (("t", b"\x00\x01"), ("t", b"2"))),
        SourceRecord(source, 0, 8, None, b'{"text": "fine"}', (), timestamp_ms=1_767_322_000_000),
        SourceRecord(source, 1, 3, b"k3", b"", (("sluicegate.route", b"up"), ("x", b"y"))),
    )
    errors: tuple[tuple[str, BaseException, str | None], ...] = (
        ("reviews", BadInput("line 1: not JSON"), None),
        ("reviews", ValueError("label 'meh' is not allowed"), "model"),
        ("posts", BadInput("empty post"), None),
    )
    records = [
        dead_letter(rec, err, topic=topic, route=route, handler="h", stage=stage)
        for rec, (route, err, stage) in zip(originals, errors, strict=True)
    ]
    _produce(kafka_bootstrap, [*records, OutRecord(topic, None, b"not an envelope")])
    return Dlq(kafka_bootstrap, topic, source, originals)


def test_inspect_filters_by_route(dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """`inspect --route` prints one line per matching envelope, bytes escaped, and a
    summary by error class that counts the unparsable record."""
    assert cli.main(["dlq", "inspect", "--topic", dlq.topic, "--route", "reviews"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{dlq.source_topic}[0]@7 route=reviews stage=decode BadInput: ")
    assert lines[0].endswith("value=\\xff\\xfe{\\x00bad")
    assert "stage=model ValueError: label 'meh' is not allowed" in lines[1]
    assert "2 of 4 envelopes matched" in err
    assert "1 unparsable" in err
    assert "BadInput=1, ValueError=1" in err


def test_inspect_json_with_error_class_and_limit(
    dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--json --error-class --limit` prints full envelopes that parse back to the original."""
    argv = ["dlq", "inspect", "--topic", dlq.topic, "--json", "--error-class", "BadInput"]
    assert cli.main([*argv, "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    env = DlqEnvelope.from_json(lines[0])
    first = dlq.originals[0]
    assert (env.key, env.value, env.headers) == (first.key, first.value, list(first.headers))


def test_replay_dry_run_sends_nothing(
    dlq: Dlq, make_topic: TopicFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replay --dry-run` says what it would send and produces nothing."""
    target = make_topic("replay")
    assert cli.main(["dlq", "replay", "--topic", dlq.topic, "--to-topic", target, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("would send") == 3
    assert f"would replay 3 events to {target}; nothing was sent" in out
    assert consume(dlq.bootstrap, target, expected=1, timeout=3) == []


def test_replay_to_topic_sends_identical_originals(
    dlq: Dlq, make_topic: TopicFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """`replay --to-topic` publishes each original key, value and headers byte for byte,
    without any sluicegate.* header."""
    target = make_topic("replay")
    assert cli.main(["dlq", "replay", "--topic", dlq.topic, "--to-topic", target]) == 0
    assert f"replayed 3 events to {target}" in capsys.readouterr().out
    got = consume(dlq.bootstrap, target, expected=3)
    assert [(r.key, r.value, r.headers) for r in got] == [
        (o.key, o.value, tuple(kv for kv in o.headers if not kv[0].startswith("sluicegate.")))
        for o in dlq.originals
    ]
    assert got[2].headers == (("x", b"y"),)


def test_replay_defaults_to_the_source_topic(dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """Without `--to-topic` an event goes back to the topic it came from."""
    assert cli.main(["dlq", "replay", "--topic", dlq.topic, "--route", "posts"]) == 0
    assert f"replayed 1 events to their source topics: {dlq.source_topic} (1)" in (
        capsys.readouterr().out
    )
    got = consume(dlq.bootstrap, dlq.source_topic, expected=1)
    assert [(r.key, r.value, r.headers) for r in got] == [(b"k3", b"", (("x", b"y"),))]


def test_missing_dlq_topic_is_a_config_error(dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """A DLQ topic that does not exist exits 2 and names the topic."""
    assert cli.main(["dlq", "inspect", "--topic", "no-such-dlq"]) == cli.EXIT_CONFIG
    assert "'no-such-dlq' does not exist" in capsys.readouterr().err


def test_unreachable_broker_exits_3_naming_the_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no broker listening, inspect exits 3 and names the address it tried."""
    monkeypatch.delenv("SLUICEGATE_CONFIG", raising=False)
    monkeypatch.setenv("SLUICEGATE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    argv = ["dlq", "inspect", "--topic", "dlq", "--timeout", "1"]
    assert cli.main(argv) == cli.EXIT_UNAVAILABLE
    assert "Kafka at 127.0.0.1:1" in capsys.readouterr().err


def test_replay_failure_exits_1(
    dlq: Dlq,
    make_topic: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An original the producer refuses is counted, reported, and the exit code is 1."""
    big = SourceRecord(dlq.source_topic, 0, 9, b"big", b"\x00" * 5000)
    _produce(
        dlq.bootstrap, [dead_letter(big, BadInput("x"), topic=dlq.topic, route="logs", handler="h")]
    )
    monkeypatch.setenv("SLUICEGATE_KAFKA__PRODUCER_EXTRA", '{"message.max.bytes": 1000}')
    target = make_topic("replay")
    argv = ["dlq", "replay", "--topic", dlq.topic, "--to-topic", target]
    assert cli.main(argv) == cli.EXIT_FAILURE
    captured = capsys.readouterr()
    assert f"replayed 3 events to {target}" in captured.out
    assert "1 of 4 events were not replayed" in captured.err
    assert "@9" in captured.err


def test_preview_escapes_and_cuts() -> None:
    """Previews stay on one line, show non-UTF-8 bytes as \\xNN and never exceed the limit."""
    assert preview(None) == "null"
    assert preview(b"caf\xc3\xa9\n\x00\xff\\") == "café\\n\\x00\\xff\\\\"
    assert preview(b"a" * 80) == "a" * 80
    assert preview(b"a" * 81) == "a" * 79 + "…"
    assert preview(b"\x00" * 10_000_000) == "\\x00" * 19 + "…"
    assert len(escape("\u200b" * 100, 50)) <= 50


def _closed_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends


def test_unreachable_kafka_is_one_clear_error_not_a_flood() -> None:
    """`dlq inspect --bootstrap-servers` at a closed port exits 3 naming the address,
    with librdkafka's connection errors said once per state, not ~25 a second."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    address = f"127.0.0.1:{_closed_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "stream", "dlq", "inspect", "--bootstrap-servers", address,
         "--timeout", "4"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == cli.EXIT_UNAVAILABLE, done.stderr
    assert address in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 6, lines  # was ~190 in 10 s
    assert not any("%3|" in line for line in lines)  # nothing printed by librdkafka itself
