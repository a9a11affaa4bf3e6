"""``sluicegate produce`` and ``sluicegate tail``: put traffic on a topic, watch a topic.

``produce`` sends a file to a topic at a chosen rate with a progress bar: JSON lines
(one record per line, as is), CSV (each row becomes a JSON object) or any other text
(one record per line: log files). ``tail`` prints a topic's records as they arrive and
recognises sluicegate's own formats (enriched events, alerts, DLQ envelopes) to show one
readable line for each.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stream.config import KafkaSettings, load
from stream.errors import ConfigError
from stream.kafka.admin import check_reachable
from stream.telemetry.logs import librdkafka_logger


def add_traffic_commands(sub: Any) -> None:
    prod = sub.add_parser("produce", help="send a file's records to a topic at a chosen rate")
    prod.add_argument("topic", help="the topic to produce to")
    prod.add_argument("--file", type=Path, required=True,
                      help="JSON lines, CSV (rows become JSON objects) or text lines")  # fmt: skip
    prod.add_argument("--format", choices=["auto", "jsonl", "csv", "lines"], default="auto",
                      help="how to read the file (auto: by extension)")  # fmt: skip
    prod.add_argument("--key-field", default=None, help="JSON field to use as the record key")
    prod.add_argument(
        "--bad-lines", choices=list(BAD_LINES), default="refuse",
        help="JSON lines that are not JSON: refuse (send nothing, name the line), send them "
        "as they are (to see them dead-lettered), or skip them and count them",
    )  # fmt: skip
    prod.add_argument("--rate", type=float, default=0.0, help="records per second (0: fast)")
    prod.add_argument("--limit", type=int, default=None, help="send at most N records")
    prod.add_argument("--repeat", type=int, default=1, help="send the file this many times")
    _kafka_options(prod)
    prod.set_defaults(handler=_cmd_produce)

    tail = sub.add_parser("tail", help="print a topic's records, enriched events readably")
    tail.add_argument("topic", help="the topic to read")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest")
    tail.add_argument("-n", "--limit", type=int, default=None, help="stop after N records")
    tail.add_argument("--follow", action="store_true", help="keep waiting for new records")
    tail.add_argument("--raw", action="store_true",
                      help="print each value unchanged, one per line, nothing added (pipes "
                      "into jq)")  # fmt: skip
    _kafka_options(tail)
    tail.set_defaults(handler=_cmd_tail)


def _kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=None, help="config (for kafka.*)")
    parser.add_argument("--bootstrap-servers", default=None, help="Kafka to use")


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    kafka = load(args.config).kafka
    if args.bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap_servers})
    check_reachable(kafka)
    return kafka


# -- produce ------------------------------------------------------------------------------

BAD_LINES = ("refuse", "send", "skip")


class Records(list[tuple[bytes | None, bytes]]):
    """``(key, value)`` pairs read from a file, and how many bad lines were skipped."""

    skipped: int = 0
    sent_bad: int = 0


def read_records(
    path: Path, fmt: str = "auto", key_field: str | None = None, bad_lines: str = "refuse"
) -> Records:
    """``(key, value)`` pairs from a file. A JSON line that is not JSON raises a
    ``ConfigError`` naming it (``refuse``), is kept as it is (``send``) or left out and
    counted (``skip``)."""
    if not path.is_file():
        raise ConfigError(f"--file: {path} is not a file")
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(path.suffix, "lines")
    raw = path.read_bytes()
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace")))
        values = [orjson.dumps(row) for row in reader]
    else:
        values = [line for line in raw.splitlines() if line.strip()]
    out = Records()
    for number, value in enumerate(values, 1):
        if fmt == "jsonl":
            try:
                orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                if bad_lines == "skip":
                    out.skipped += 1
                    continue
                if bad_lines != "send":
                    raise ConfigError(
                        f"--file {path}: line {number} is not JSON: {exc}; nothing was sent "
                        "(--bad-lines send sends such lines as they are, --bad-lines skip "
                        "leaves them out)"
                    ) from None
                out.sent_bad += 1
        out.append((_key(value, key_field), value))
    if not out:
        raise ConfigError(f"--file {path}: no records in it")
    return out


def _key(value: bytes, field: str | None) -> bytes | None:
    if field is None:
        return None
    try:
        found = orjson.loads(value).get(field)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return None if found is None else str(found).encode()


def _cmd_produce(args: argparse.Namespace) -> int:
    records = read_records(args.file, args.format, args.key_field, args.bad_lines)
    if args.repeat < 1 or args.rate < 0 or (args.limit is not None and args.limit < 1):
        raise ConfigError("--repeat >= 1, --rate >= 0 and --limit >= 1")
    kafka = _kafka(args)
    total = len(records) * args.repeat
    if args.limit is not None:
        total = min(total, args.limit)
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({**kafka.client_config(), "enable.idempotence": True, "linger.ms": 5,
                         "logger": librdkafka_logger()})  # fmt: skip
    console = Console(stderr=True)
    started = time.monotonic()
    columns = (TextColumn(f"producing to {args.topic}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:>8.0f}/s"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("produce", total=total, rate=0.0)
        for sent, (key, value) in enumerate(_cycle(records, total), 1):
            while True:
                try:
                    producer.produce(args.topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.05)
            producer.poll(0)
            if args.rate:
                ahead = started + sent / args.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if sent % 200 == 0 or sent == total:
                elapsed = max(time.monotonic() - started, 1e-9)
                progress.update(task, completed=sent, rate=sent / elapsed)
        remaining = producer.flush(30)
    if remaining or failures:
        console.print(f"[red]{remaining} records unsent, {len(failures)} failed[/red]: "
                      f"{failures[:3]}")  # fmt: skip
        return 1
    elapsed = time.monotonic() - started
    console.print(f"sent {total:,} records to {args.topic} in {elapsed:.1f}s "
                  f"({total / max(elapsed, 1e-9):,.0f}/s), all acknowledged")  # fmt: skip
    if records.skipped:
        console.print(f"skipped {records.skipped} line(s) of {args.file} that are not JSON")
    if records.sent_bad:
        console.print(f"{records.sent_bad} line(s) of {args.file} that are not JSON were "
                      "sent as they are")  # fmt: skip
    return 0


def _cycle(
    records: list[tuple[bytes | None, bytes]], total: int
) -> Iterator[tuple[bytes | None, bytes]]:
    sent = 0
    while sent < total:
        for record in records:
            if sent == total:
                return
            yield record
            sent += 1


# -- tail ---------------------------------------------------------------------------------


def describe(value: bytes) -> str:
    """One readable line for a record value: sluicegate's formats, else the JSON or text."""
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", errors="replace")[:300]
    if isinstance(parsed, dict) and "enrichment" in parsed and "event" in parsed:
        e = parsed["enrichment"]
        answer = {k: v for k, v in e.get("answer", {}).items() if not isinstance(v, dict | list)}
        return (f"[{e.get('tier')}:{e.get('source')}] {e.get('handler')} {answer} "
                f"${e.get('cost_usd', 0):.6f} <- {str(parsed['event'])[:80]}")  # fmt: skip
    if isinstance(parsed, dict) and {"kind", "dedup_key", "reason"} <= parsed.keys():
        where = parsed.get("source") or parsed.get("route") or "-"
        return f"ALERT {parsed.get('severity')} {parsed['kind']} {where}: {parsed['reason']}"
    if isinstance(parsed, dict) and {"error_class", "stage", "source_topic"} <= parsed.keys():
        where = f"{parsed['source_topic']}[{parsed['source_partition']}]@{parsed['source_offset']}"
        return f"DLQ {where} {parsed['error_class']} ({parsed['stage']}): {parsed['error_message']}"
    return orjson.dumps(parsed).decode()[:300]


def _cmd_tail(args: argparse.Namespace) -> int:
    kafka = _kafka(args)
    reset = "earliest" if args.from_beginning else "latest"
    consumer = Consumer({**kafka.client_config(), "group.id": f"sluicegate-tail-{time.time_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": reset,
                         "logger": librdkafka_logger()})  # fmt: skip
    metadata = consumer.list_topics(args.topic, timeout=10).topics.get(args.topic)
    if metadata is None or metadata.error is not None:
        consumer.close()
        raise ConfigError(f"topic {args.topic!r} does not exist on {kafka.bootstrap_servers}")
    consumer.assign([TopicPartition(args.topic, p) for p in metadata.partitions])
    console = Console(highlight=False, soft_wrap=True)  # one record, one line
    raw_out = sys.stdout.buffer
    shown, idle_since = 0, time.monotonic()
    try:
        while args.limit is None or shown < args.limit:
            message = consumer.poll(0.5)
            if message is None:
                if not args.follow and time.monotonic() - idle_since > 3:
                    break
                continue
            if message.error() is not None:
                continue
            idle_since = time.monotonic()
            value = message.value() or b""
            shown += 1
            if args.raw:  # the bytes as they are, one record a line: `| jq` reads it
                raw_out.write(value + b"\n")
                raw_out.flush()
                continue
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            console.print(f"{where} {describe(value)}", markup=False)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
