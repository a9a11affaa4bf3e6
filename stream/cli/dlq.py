"""``sluicegate dlq inspect`` and ``sluicegate dlq replay``: read the dead-letter topic.

Both read the DLQ from its start up to the end offsets seen when they start, with a
throwaway consumer group that never commits: they terminate, move nobody's offsets and
can run while the processor runs. Records that are not envelopes are counted and
skipped. Replay publishes the original key, value and headers, bytes unchanged.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections import Counter
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from schemas.dlq import DlqEnvelope
from stream.config import KafkaSettings, Settings, load
from stream.dlq import from_raw, is_raw
from stream.errors import ConfigError, KafkaError, KafkaUnavailable, ProduceFailed
from stream.kafka.headers import OURS_PREFIX, message_headers
from stream.telemetry.logs import librdkafka_logger

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, Producer

PREVIEW_CHARS = 80
MESSAGE_CHARS = 200


def add_dlq_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dlq inspect`` and ``dlq replay`` on the top-level command parser."""
    dlq = subparsers.add_parser("dlq", help="inspect or replay the dead-letter topic")
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    inspect = actions.add_parser("inspect", help="print dead-lettered events, oldest first")
    _common_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print full envelopes as JSON lines")
    inspect.set_defaults(handler=_cmd_inspect)
    replay = actions.add_parser("replay", help="publish the original events again")
    _common_options(replay)
    replay.add_argument("--to-topic", help="publish here instead of each event's source topic")
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send nothing"
    )
    replay.set_defaults(handler=_cmd_replay)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=None, help="TOML config file (default: "
        "$SLUICEGATE_CONFIG, else defaults plus environment)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap-servers", default=None,
        help="Kafka to use (default: kafka.bootstrap_servers from config/environment)",
    )  # fmt: skip
    parser.add_argument("--topic", help="the DLQ topic (default: dlq.topic from the config)")
    parser.add_argument("--route", help="only envelopes of this route")
    parser.add_argument("--source-topic", help="only events that came from this topic")
    parser.add_argument("--error-class", help="only this error class (full or last dotted part)")
    parser.add_argument("--stage", help="only this stage (decode, handler, model, produce, ...)")
    parser.add_argument("--limit", type=_positive, help="stop after N matching envelopes")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for Kafka (default: 10)"
    )


@dataclass(frozen=True)
class Filters:
    """The envelope filters given on the command line; None matches anything."""

    route: str | None = None
    source_topic: str | None = None
    error_class: str | None = None
    stage: str | None = None

    def match(self, env: DlqEnvelope) -> bool:
        short = env.error_class.rpartition(".")[2]
        return (
            self.route in (None, env.route)
            and self.source_topic in (None, env.source_topic)
            and self.error_class in (None, env.error_class, short)
            and self.stage in (None, env.stage)
        )


@dataclass
class ReadStats:
    """What a read saw, for the summary: envelopes plus records that were not envelopes."""

    topic: str
    read: int = 0
    unparsable: int = 0


def _spans(
    consumer: Consumer, topic: str, timeout: float, address: str
) -> dict[int, tuple[int, int]]:
    """(first, end) offsets of each non-empty partition, right now."""
    from confluent_kafka import TopicPartition  # noqa: PLC0415

    found = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if found is None or found.error is not None:
        raise ConfigError(
            f"DLQ topic {topic!r} does not exist on Kafka at {address}; check dlq.topic or --topic"
        )
    spans: dict[int, tuple[int, int]] = {}
    for partition in sorted(found.partitions):
        tp = TopicPartition(topic, partition)
        spans[partition] = consumer.get_watermark_offsets(tp, timeout=timeout)
    return {p: span for p, span in spans.items() if span[1] > span[0]}


def read_envelopes(
    kafka: KafkaSettings, stats: ReadStats, timeout: float
) -> Generator[DlqEnvelope, None, None]:
    """Envelopes of ``stats.topic`` from its start to the end offsets seen on the first
    ``next()``; close the generator (``contextlib.closing``) to release the consumer."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: PLC0415

    conf: dict[str, Any] = {
        **kafka.client_config(),
        **kafka.consumer_extra,
        "group.id": f"sluicegate-dlq-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,  # ends a partition whose tail is a transaction marker
        "logger": librdkafka_logger(),  # one line per state while Kafka is unreachable
    }
    consumer = Consumer(conf)
    try:
        try:
            spans = _spans(consumer, stats.topic, timeout, kafka.bootstrap_servers)
        except KafkaException as exc:
            raise KafkaUnavailable(
                f"Kafka at {kafka.bootstrap_servers} did not answer within {timeout:g}s "
                f"({exc.args[0]}); check kafka.bootstrap_servers and the security settings"
            ) from None
        consumer.assign([TopicPartition(stats.topic, p, low) for p, (low, _) in spans.items()])
        ends = {p: high for p, (_, high) in spans.items()}
        idle = 0.0
        while ends:
            batch = consumer.consume(500, 0.5)
            idle = 0.0 if batch else idle + 0.5
            if idle >= timeout:
                print(
                    f"stopped after {timeout:g}s without progress; partitions {sorted(ends)} "
                    f"of {stats.topic} were not read to the end",
                    file=sys.stderr,
                )
                return
            for msg in batch:
                env = _take(msg, ends, stats)
                if env is not None:
                    yield env
    finally:
        consumer.close()


def _take(msg: Message, ends: dict[int, int], stats: ReadStats) -> DlqEnvelope | None:
    partition, offset, err = msg.partition() or 0, msg.offset() or 0, msg.error()
    if err is not None:
        if err.fatal():
            raise KafkaError(f"reading {stats.topic}: {err.str()}", code=err.name())
        if err.name() == "_PARTITION_EOF":
            ends.pop(partition, None)
        return None
    end = ends.get(partition)
    if end is None or offset >= end:
        return None
    if offset + 1 >= end:
        del ends[partition]
    stats.read += 1
    headers = message_headers(msg)
    try:
        if is_raw(headers):  # an envelope too large for one record: see stream/dlq.py
            return from_raw(msg.key(), msg.value(), headers)
        return DlqEnvelope.from_json(msg.value() or b"")
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.error_count() else "empty"
        problem = f"not a DLQ envelope ({first})"
    except ValueError as exc:  # a raw record with a header missing or malformed
        problem = f"not a raw DLQ record ({exc})"
    stats.unparsable += 1
    print(f"skipped {stats.topic}[{partition}]@{offset}: {problem}", file=sys.stderr)
    return None


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    if "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def escape(text: str, limit: int) -> str:
    """``text`` on one line in at most ``limit`` characters: backslashes doubled,
    non-printables and non-UTF-8 bytes escaped (``\\n``, ``\\x00``), ``…`` if cut."""
    pieces: list[str] = []
    size = 0
    for ch in text:
        pieces.append(_escape_char(ch))
        size += len(pieces[-1])
        if size > limit:
            break
    if size <= limit:
        return "".join(pieces)
    while size > limit - 1:
        size -= len(pieces.pop())
    return "".join(pieces) + "…"


def preview(data: bytes | None, limit: int = PREVIEW_CHARS) -> str:
    """A one-line, printable preview of record bytes (``null`` for none)."""
    if data is None:
        return "null"
    # 4 bytes per character at most: this head always holds more than `limit` characters
    # when the value does, so a 10 MB value is never decoded whole just to show 80.
    head = data[: 4 * limit + 4]
    return escape(head.decode("utf-8", errors="surrogateescape"), limit)


def _matching(
    args: argparse.Namespace, kafka: KafkaSettings, stats: ReadStats
) -> Iterator[DlqEnvelope]:
    """The envelopes the command line's filters and ``--limit`` select."""
    filters = Filters(args.route, args.source_topic, args.error_class, args.stage)
    with closing(read_envelopes(kafka, stats, args.timeout)) as envelopes:
        selected = (env for env in envelopes if filters.match(env))
        yield from islice(selected, args.limit)


def _settings(args: argparse.Namespace) -> Settings:
    """The config, with ``--bootstrap-servers`` over ``kafka.bootstrap_servers``."""
    settings = load(args.config)
    if args.bootstrap_servers:
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": args.bootstrap_servers})
        settings = settings.model_copy(update={"kafka": kafka})
    return settings


def _cmd_inspect(args: argparse.Namespace) -> int:
    settings = _settings(args)
    classes: Counter[str] = Counter()
    stats = ReadStats(args.topic or settings.dlq.topic)
    for env in _matching(args, settings.kafka, stats):
        classes[env.error_class] += 1
        if args.json:
            print(env.to_json().decode())
            continue
        print(
            f"{env.where} route={env.route} stage={env.stage} {env.error_class}: "
            f"{escape(env.error_message, MESSAGE_CHARS)} failed_at="
            f"{env.failed_at.isoformat()} value={preview(env.value)}"
        )
    counts = ", ".join(f"{name}={n}" for name, n in classes.most_common()) or "none"
    print(
        f"{classes.total()} of {stats.read} envelopes matched in {stats.topic} "
        f"({stats.unparsable} unparsable, skipped); by error class: {counts}",
        file=sys.stderr,
    )
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer  # noqa: PLC0415

    settings = _settings(args)
    dlq_topic = args.topic or settings.dlq.topic
    if args.to_topic == dlq_topic:
        raise ConfigError(f"--to-topic {args.to_topic!r} is the DLQ topic itself")
    extra = {k: v for k, v in settings.kafka.producer_extra.items() if k != "transactional.id"}
    producer = None
    if not args.dry_run:
        conf = {**settings.kafka.client_config(), **extra, "enable.idempotence": True,
                "logger": librdkafka_logger()}  # fmt: skip
        producer = Producer(conf)
    failures: list[str] = []
    sent: Counter[str] = Counter()
    truncated = 0
    for env in _matching(args, settings.kafka, ReadStats(dlq_topic)):
        if env.value_bytes is not None:  # only the value's first bytes were kept
            truncated += 1
            print(
                f"not replaying {env.where}: the DLQ kept {len(env.value or b'')} of its "
                f"{env.value_bytes} bytes; read the original at that offset",
                file=sys.stderr,
            )
            continue
        target: str = args.to_topic or env.source_topic
        sent[target] += 1
        if producer is not None:
            _send(producer, target, env, failures)
            continue
        print(
            f"would send {env.where} -> {target} key={preview(env.key)} "
            f"value={preview(env.value)} headers={len(original_headers(env))}"
        )
    where = args.to_topic or "their source topics: " + ", ".join(
        f"{topic} ({n})" for topic, n in sorted(sent.items())
    )
    if producer is None:
        print(f"dry run: would replay {sent.total()} events to {where}; nothing was sent")
        return 0
    unsent = producer.flush(max(30.0, args.timeout))
    failures.extend(["not acknowledged before the flush timeout"] * unsent)
    print(
        f"replayed {sent.total() - len(failures)} events to {where}"
        + (f"; {truncated} truncated ones left out" if truncated else "")
    )
    if failures:
        raise ProduceFailed(
            f"{len(failures)} of {sent.total()} events were not replayed (first: {failures[0]})",
            retriable=False,
        )
    return 0


def original_headers(env: DlqEnvelope) -> list[tuple[str, str | bytes | None]]:
    """The event's own headers, without any ``sluicegate.*`` trace or DLQ header."""
    return [(name, value) for name, value in env.headers if not name.startswith(OURS_PREFIX)]


def _send(producer: Producer, target: str, env: DlqEnvelope, failures: list[str]) -> None:
    """Queue one original for delivery; every failure, now or in the report, is counted."""
    from confluent_kafka import KafkaException  # noqa: PLC0415

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            failures.append(f"{env.where} -> {target}: {err}")

    while True:
        try:
            producer.produce(
                target, env.value, env.key, headers=original_headers(env), on_delivery=on_delivery
            )
            break
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.5)
        except KafkaException as exc:  # e.g. larger than message.max.bytes
            failures.append(f"{env.where} -> {target}: {exc.args[0]}")
            break
    producer.poll(0)
