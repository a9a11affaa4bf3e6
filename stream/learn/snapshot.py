"""The learned tier's warm state in Kafka: one compacted topic per route.

A route's student (every field model's coefficients, intercepts, classes and step count)
and its calibration (the recent compared events the threshold is chosen from, and the
threshold) are written as one record to ``<group_id>.<route>.student``, a topic created
with ``cleanup.policy=compact``, keyed by the route, so the topic keeps the latest
snapshot of each route. A processor reads it at start (before its first event), and
writes it every ``processing.student_snapshot_s`` seconds when the student learned
something new, and once more at shutdown. Replicas of a route share the topic: one that
starts takes the newest snapshot any of them wrote (replicas that run side by side each
go on learning from their own partitions; the last to write wins).

No pickle: the record is zlib-compressed JSON (orjson), arrays as base64 of their
little-endian bytes (coefficients as float32, only the non-zero ones), with ``version``
and the feature layout. A snapshot of another version or layout, or of another answer
shape, is refused with a log line saying why, and the student starts cold.

The replay buffer is not kept: a restarted student answers at once from its snapshot
and replays only answers it learns after the restart.
"""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sklearn.linear_model import SGDClassifier

from stream.learn import student as students
from stream.learn.tier import LearnedTier

if TYPE_CHECKING:
    from stream.config import KafkaSettings

log = logging.getLogger("sluicegate.learn")

VERSION = 1
# The largest snapshot (a moderation route: 16 field models of 2 * 2**17 weights, float32
# and index: 32 MiB before compression) fits in one record of the topic.
MAX_BYTES = 64 * 1024 * 1024


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded into this student (the message says why)."""


def topic_for(group_id: str, route: str) -> str:
    return f"{group_id}.{route}.student"


def _layout() -> dict[str, Any]:
    return {
        "n_features": students.N_FEATURES,
        "max_chars": students.MAX_CHARS,
        "char_chars": students.CHAR_CHARS,
        "loss": "log_loss",
    }


def _array(a: np.ndarray, dtype: str) -> dict[str, Any]:
    data = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<"))
    text = base64.b64encode(data.tobytes()).decode()
    return {"dtype": dtype, "shape": list(a.shape), "b64": text}


def _unarray(d: Mapping[str, Any]) -> np.ndarray:
    dtype = np.dtype(str(d["dtype"])).newbyteorder("<")
    raw = np.frombuffer(base64.b64decode(d["b64"]), dtype=dtype)
    return raw.reshape([int(n) for n in d["shape"]]).astype(raw.dtype.newbyteorder("="))


def _model_state(model: SGDClassifier) -> dict[str, Any]:
    coef = np.asarray(model.coef_)
    flat = coef.ravel()
    nonzero = np.flatnonzero(flat)
    return {
        "classes": [c.item() if hasattr(c, "item") else c for c in model.classes_],
        "t": float(model.t_),
        "intercept": _array(np.asarray(model.intercept_), "float64"),
        "coef_shape": list(coef.shape),
        "coef_index": _array(nonzero.astype(np.int32), "int32"),
        "coef_values": _array(flat[nonzero], "float32"),
    }


def _restore_model(state: Mapping[str, Any], n_columns: int) -> SGDClassifier:
    classes = np.array(state["classes"])
    shape = tuple(int(n) for n in state["coef_shape"])
    if shape[-1] != n_columns:
        raise SnapshotError(f"a field model has {shape[-1]} features, this student {n_columns}")
    model = students.new_model()
    # One step on an empty row sets up every internal the next partial_fit needs; the
    # learned weights then replace what it set.
    model.partial_fit(np.zeros((1, n_columns)), classes[:1], classes=classes)
    coef = np.zeros(int(np.prod(shape)))
    coef[_unarray(state["coef_index"])] = _unarray(state["coef_values"])
    model.coef_ = coef.reshape(shape)
    model.intercept_ = _unarray(state["intercept"]).astype(np.float64)
    model.t_ = float(state["t"])
    return model


@dataclass(frozen=True)
class Calibration:
    """What the tier's threshold is chosen from, copied on the event loop."""

    pairs: list[tuple[float, bool, float]]
    threshold: float | None


def calibration_of(tier: LearnedTier) -> Calibration:
    """Copy the tier's calibration (on the event loop, where it changes)."""
    return Calibration(list(tier.pairs), tier.stats.threshold)


def encode(tier: LearnedTier, calibration: Calibration, route: str, handler: str) -> bytes:
    """The snapshot record's value (in a worker thread: the student's lock is taken)."""
    student = tier.student
    with student.lock:
        models = [
            {"field": name, "key": None, **_model_state(m)}
            for name, m in student.enum_models.items()
            if hasattr(m, "classes_")
        ] + [
            {"field": name, "key": key, "seen": student.score_seen.get((name, key), 0),
             **_model_state(m)}
            for (name, key), m in student.score_models.items()
            if hasattr(m, "classes_")
        ]  # fmt: skip
        body = {
            "version": VERSION,
            "route": route,
            "handler": handler,
            "layout": _layout(),
            "enums": {k: list(v) for k, v in student.enums.items()},
            "may_omit": sorted(student.may_omit),
            "shape": student.shape,
            "trained": student.trained,
            "models": models,
            "calibration": {
                "target": tier.target,
                "threshold": calibration.threshold,
                "pairs": [[c, bool(a), w] for c, a, w in calibration.pairs],
            },
        }
    return zlib.compress(orjson.dumps(body), 6)


def decode(value: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(zlib.decompress(value))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise SnapshotError(f"not a student snapshot ({exc})") from None
    if not isinstance(body, dict):
        raise SnapshotError("not a student snapshot (not a JSON object)")
    return body


def restore(tier: LearnedTier, body: Mapping[str, Any], handler: str) -> None:
    """Load a decoded snapshot into a fresh tier; ``SnapshotError`` says what differs."""
    if body.get("handler") != handler:
        raise SnapshotError(f"written by handler {body.get('handler')!r}, not {handler!r}")
    version = body.get("version")
    if version != VERSION:
        raise SnapshotError(f"snapshot version {version!r}, this build reads {VERSION}")
    if body.get("layout") != _layout():
        raise SnapshotError(f"feature layout {body.get('layout')}, this build's {_layout()}")
    student = tier.student
    enums = {k: list(v) for k, v in student.enums.items()}
    if body.get("enums") != enums:
        raise SnapshotError(f"answer fields {body.get('enums')}, this route's {enums}")
    if body.get("may_omit") != sorted(student.may_omit):
        raise SnapshotError(
            f"fields left empty {body.get('may_omit')}, this route's {sorted(student.may_omit)}"
        )
    n_columns = 2 * students.N_FEATURES
    enum_models: dict[str, SGDClassifier] = {}
    score_models: dict[tuple[str, str], SGDClassifier] = {}
    seen: dict[tuple[str, str], int] = {}
    for state in body.get("models", []):
        model = _restore_model(state, n_columns)
        if state["key"] is None:
            enum_models[str(state["field"])] = model
        else:
            score_models[str(state["field"]), str(state["key"])] = model
            seen[str(state["field"]), str(state["key"])] = int(state.get("seen", 0))
    shape = body.get("shape") or None
    student.load(enum_models, score_models, seen, shape, int(body.get("trained", 0)))
    calibration = body.get("calibration") or {}
    pairs = [(float(c), bool(a), float(w)) for c, a, w in calibration.get("pairs", [])]
    tier.load_calibration(pairs)


def restore_tiers(
    tiers: Mapping[str, tuple[LearnedTier, str]], values: Mapping[str, bytes]
) -> list[str]:
    """Restore each route's tier from its snapshot value; return the routes restored.
    A snapshot that does not fit is refused with a log line naming the route and why."""
    restored = []
    for route, (tier, handler) in tiers.items():
        value = values.get(route)
        if value is None:
            log.info("learned tier of route %r: no snapshot yet, starting cold", route)
            continue
        try:
            restore(tier, decode(value), handler)
        except (SnapshotError, KeyError, TypeError, ValueError) as exc:
            log.warning("learned tier of route %r: snapshot refused, starting cold: %s", route, exc)
            continue
        restored.append(route)
        log.info(
            "learned tier of route %r: snapshot loaded (%d answers learned, threshold %s)",
            route, tier.student.trained, tier.stats.threshold,
        )  # fmt: skip
    return restored


# -- Kafka --------------------------------------------------------------------------------


def ensure_snapshot_topics(kafka: KafkaSettings, topics: Sequence[str]) -> None:
    """Create the compacted snapshot topics that do not exist yet."""
    from stream.kafka.admin import ensure_topics  # noqa: PLC0415

    config = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_BYTES)}
    ensure_topics(kafka, dict.fromkeys(topics, 1), config=config)


def read_latest(kafka: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[str, bytes]:
    """The newest value of each key in a snapshot topic (read to its end)."""
    import time  # noqa: PLC0415

    from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: PLC0415

    conf = {
        **kafka.client_config(),
        "group.id": f"{topic}.reader",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.max.bytes": MAX_BYTES,
        "max.partition.fetch.bytes": MAX_BYTES,
        "receive.message.max.bytes": MAX_BYTES + 1024 * 1024,
    }
    consumer = Consumer(conf)
    latest: dict[str, bytes] = {}
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
        deadline = time.monotonic() + timeout
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            position = low
            while position < high:
                if time.monotonic() > deadline:
                    raise KafkaException(f"{topic}: not read to its end within {timeout:.0f}s")
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                position = (msg.offset() or position) + 1
                key = msg.key()
                if key is not None:
                    value = msg.value()
                    if value is None:
                        latest.pop(key.decode(), None)
                    else:
                        latest[key.decode()] = value
    finally:
        consumer.close()
    return latest


class SnapshotWriter:
    """A producer of its own for snapshot records (they are larger than events)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        from confluent_kafka import Producer  # noqa: PLC0415

        self._producer = Producer({
            **kafka.client_config(),
            "message.max.bytes": MAX_BYTES + 1024 * 1024,
            "compression.type": "none",  # the value is compressed already
            "linger.ms": 0,
        })  # fmt: skip

    def write(self, topic: str, key: str, value: bytes, timeout: float = 30.0) -> None:
        errors: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        self._producer.produce(topic, value=value, key=key.encode(), on_delivery=report)
        left = self._producer.flush(timeout)
        if left or errors:
            raise OSError(f"snapshot to {topic!r} not written: {errors or 'timed out'}")


class StudentSnapshots:
    """Loads each learning route's snapshot at start, writes them periodically and at
    shutdown (``stream.runtime.processor``)."""

    def __init__(
        self, kafka: KafkaSettings, tiers: Mapping[str, tuple[LearnedTier, str]],
        interval_s: float,
    ) -> None:  # fmt: skip
        self.kafka = kafka
        self.tiers = dict(tiers)
        self.interval_s = interval_s
        self.topics = {route: topic_for(kafka.group_id, route) for route in self.tiers}
        self._saved: dict[str, int] = {}  # route -> answers learned at its last snapshot
        self._writer: SnapshotWriter | None = None
        self.loaded: list[str] = []

    def load(self) -> list[str]:
        """Create the topics if needed and restore every route that has a snapshot (in a
        worker thread). Kafka errors are logged: the routes then start cold."""
        from confluent_kafka import KafkaException  # noqa: PLC0415

        from stream.errors import KafkaUnavailable  # noqa: PLC0415

        try:
            ensure_snapshot_topics(self.kafka, list(self.topics.values()))
            values: dict[str, bytes] = {}
            for route, topic in self.topics.items():
                found = read_latest(self.kafka, topic).get(route)
                if found is not None:
                    values[route] = found
        except (KafkaException, KafkaUnavailable) as exc:
            log.warning("learned tier snapshots not read, every route starts cold: %s", exc)
            return []
        self.loaded = restore_tiers(self.tiers, values)
        for route in self.loaded:
            self._saved[route] = self.tiers[route][0].student.trained
        return self.loaded

    async def save(self, flush_s: float = 30.0) -> list[str]:
        """Write the snapshot of every route whose student learned since its last one,
        waiting at most ``flush_s`` for each (shutdown passes a short one)."""
        import asyncio  # noqa: PLC0415

        written = []
        for route, (tier, handler) in self.tiers.items():
            trained = tier.student.trained
            if trained == 0 or self._saved.get(route) == trained:
                continue
            calibration = calibration_of(tier)  # on the loop, where the pairs change
            await asyncio.to_thread(self._write, route, tier, handler, calibration, flush_s)
            self._saved[route] = trained
            written.append(route)
        return written

    def _write(
        self, route: str, tier: LearnedTier, handler: str, cal: Calibration, timeout: float
    ) -> None:
        if self._writer is None:
            self._writer = SnapshotWriter(self.kafka)
        value = encode(tier, cal, route, handler)
        self._writer.write(self.topics[route], route, value, timeout)
        log.info(
            "learned tier of route %r: snapshot written to %s (%d bytes, %d answers learned)",
            route, self.topics[route], len(value), tier.student.trained,
        )  # fmt: skip

    async def periodic(self) -> None:
        """Every ``interval_s``: ``save``; a failure is logged and tried again next time."""
        import asyncio  # noqa: PLC0415

        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.save()
            except Exception as exc:  # noqa: BLE001 - a snapshot never stops the processor
                log.warning("learned tier snapshot not written (next try in %gs): %s",
                            self.interval_s, exc)  # fmt: skip
