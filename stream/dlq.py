"""Dead-lettering: what a failed event becomes, and the cap that stops a broken deploy.

``dead_letter()`` turns a failed ``SourceRecord`` into the ``OutRecord`` the sink produces
to the DLQ topic: the original key, a ``DlqEnvelope`` as value (original bytes kept
exactly) and the original headers followed by sluicegate's trace and DLQ headers. An
envelope too large for one record (base64 makes a value a third larger: an event near
the producer's ``message.max.bytes`` would not fit) is sent raw instead: the original
value itself, with the envelope's facts in headers; ``from_raw()`` reads it back. A value
too large even for that (an input topic that takes larger records than the producer or
the DLQ topic) is cut to what fits, ``truncated``, with its length in a header: one
record never stops the processor, and the original stays at its source offset.
``DlqCap`` watches the share of dead-lettered events and raises ``DlqCapExceeded`` when
every event seems to fail, so a bad deploy stops instead of draining the input into the
DLQ. Both are pure: no Kafka I/O here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NoReturn

from schemas.dlq import DlqEnvelope
from stream import __version__, secrets
from stream.config import DlqSettings
from stream.errors import DlqCapExceeded, SluicegateError
from stream.kafka import headers as h
from stream.records import Headers, OutRecord, SourceRecord

HEADER_MESSAGE_LIMIT = 1000
# The envelope keeps more of the message than the header, but stays bounded: an error
# that quotes a 10 MB input must not double the size of the DLQ record.
ENVELOPE_MESSAGE_LIMIT = 10_000
NEAR_LIMIT_SHARE = 0.8
# librdkafka's default message.max.bytes, and what a record needs beyond its key, value
# and header bytes (framing, varints, the batch it rides in), with room to spare.
DEFAULT_MAX_RECORD_BYTES = 1_000_000
RECORD_OVERHEAD_BYTES = 1024


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message(error: BaseException) -> str:
    """``str(error)`` as valid text: dead-lettering itself must never fail."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - a broken __str__ must not stop the stream
        text = f"<str() of {type(error).__qualname__} failed>"
    # Lone surrogates (surrogateescape'd input) fit neither JSON nor a UTF-8 header.
    text = text.encode("utf-8", errors="backslashreplace").decode("utf-8")
    return secrets.mask_text(text)  # a provider's 401 quotes the key it refused


def error_class_name(error: BaseException) -> str:
    """Our own and builtin errors by class name; anyone else's qualified by module."""
    cls = type(error)
    if isinstance(error, SluicegateError) or cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter(
    record: SourceRecord,
    error: BaseException,
    *,
    topic: str,
    route: str,
    handler: str,
    stage: str | None = None,
    attempts: int = 1,
    now: datetime | None = None,
    max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> OutRecord:
    """The DLQ record for ``record`` failing with ``error``: an envelope, or the raw form
    if the envelope would make a record over ``max_bytes`` (the producer's limit).

    Only ``str(error)`` is recorded, never a traceback, ``repr`` or chained cause, so
    nothing the handler held (API keys, prompts) leaks into the DLQ. ``stage`` defaults
    to the error's own ``stage`` attribute (``EventError`` subclasses set one), else
    ``"handler"``. ``now`` must be timezone-aware; it defaults to the current UTC time.
    """
    if now is not None and now.tzinfo is None:
        raise ValueError("dead_letter(now=...) needs a timezone-aware datetime")
    failed_at = (now or datetime.now(UTC)).astimezone(UTC)
    stage = stage if stage is not None else str(getattr(error, "stage", "handler"))
    error_class = error_class_name(error)
    message = _message(error)
    envelope = DlqEnvelope(
        route=route,
        handler=handler,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_timestamp_ms=record.timestamp_ms,
        key=record.key,
        value=record.value,
        headers=list(record.headers),
        error_class=error_class,
        error_message=_truncate(message, ENVELOPE_MESSAGE_LIMIT),
        stage=stage,
        attempts=attempts,
        failed_at=failed_at,
        processor_version=__version__,
    )
    ours: list[tuple[str, bytes | None]] = [
        *h.trace_headers(record, route, __version__),
        (h.DLQ_ERROR_CLASS, error_class.encode()),
        (h.DLQ_ERROR_MESSAGE, _truncate(message, HEADER_MESSAGE_LIMIT).encode()),
        (h.DLQ_STAGE, stage.encode()),
        (h.DLQ_ATTEMPTS, str(attempts).encode()),
        (h.DLQ_FAILED_AT, envelope.failed_at.isoformat().encode()),
    ]
    if record.timestamp_ms is not None:
        ours.append((h.DLQ_SOURCE_TIMESTAMP, str(record.timestamp_ms).encode()))
    value = envelope.to_json()
    if _size(record.key, value, record.headers, ours) <= max_bytes:
        ours.append((h.DLQ_FORMAT, b"envelope"))
        return OutRecord(topic, record.key, value, (*record.headers, *ours))
    ours += [
        (h.DLQ_HANDLER, handler.encode()),
        (h.DLQ_ORIGINAL_HEADERS, str(len(record.headers)).encode()),
    ]
    raw = record.value or b""
    as_raw = (*record.headers, *ours, (h.DLQ_FORMAT, b"raw"))
    if _size(record.key, raw, as_raw) <= max_bytes:
        return OutRecord(topic, record.key, raw, as_raw)
    room = max_bytes - _size(record.key, b"", record.headers, ours, _TRUNCATED_HEADERS)
    return _truncated(topic, record.key, raw[: max(room, 0)], len(raw), (*record.headers, *ours))


# The headers a truncated dead letter adds, sized for the largest length they can say.
_TRUNCATED_HEADERS = [(h.DLQ_FORMAT, b"truncated"), (h.DLQ_VALUE_BYTES, b"9" * 20)]
# A dead letter the DLQ refused is first cut to this, then halved until it has no value.
SHRINK_FIRST_BYTES = 64 * 1024


def _truncated(
    topic: str, key: bytes | None, value: bytes, original_bytes: int, headers: Headers
) -> OutRecord:
    ours = ((h.DLQ_FORMAT, b"truncated"), (h.DLQ_VALUE_BYTES, str(original_bytes).encode()))
    return OutRecord(topic, key, value, (*headers, *ours))


def shrink(dead: OutRecord) -> OutRecord | None:
    """A smaller form of a dead letter the DLQ refused as too large (its topic takes less
    than the producer sends): the original value cut to 64 KiB, then halved, down to none;
    None once there is nothing left to cut."""
    headers = dead.headers
    form = h.header(headers, h.DLQ_FORMAT)
    if form == b"envelope":
        envelope = DlqEnvelope.from_json(dead.value)
        value, size = envelope.value or b"", len(envelope.value or b"")
        originals = len(envelope.headers)
        base: Headers = (
            *headers[:originals],
            *(x for x in headers[originals:] if x[0] != h.DLQ_FORMAT),
            (h.DLQ_HANDLER, envelope.handler.encode()),
            (h.DLQ_ORIGINAL_HEADERS, str(originals).encode()),
        )
    else:
        value = dead.value
        known = h.header(headers, h.DLQ_VALUE_BYTES)
        size = int(known) if known is not None else len(value)
        base = tuple(x for x in headers if x[0] not in (h.DLQ_FORMAT, h.DLQ_VALUE_BYTES))
    if not value:
        return None
    keep = min(len(value) // 2, SHRINK_FIRST_BYTES)
    return _truncated(dead.topic, dead.key, value[:keep] if keep >= 64 else b"", size, base)


def _size(
    key: bytes | None, value: bytes, *header_lists: Sequence[tuple[str, bytes | None]]
) -> int:
    headers = sum(len(name) + len(v or b"") + 8 for hs in header_lists for name, v in hs)
    return len(key or b"") + len(value) + headers + RECORD_OVERHEAD_BYTES


def is_raw(headers: Headers) -> bool:
    """True if a DLQ record is in the raw or truncated form (see ``dead_letter``)."""
    return h.header(headers, h.DLQ_FORMAT) in (b"raw", b"truncated")


def from_raw(key: bytes | None, value: bytes | None, headers: Headers) -> DlqEnvelope:
    """The envelope of a DLQ record in the raw form: the original value is the record's
    own; the original headers are the first ``DLQ_ORIGINAL_HEADERS`` of its headers.
    The error message is the header's (cut at 1,000 characters)."""

    def text(name: str) -> str:
        found = h.header(headers, name)
        if found is None:
            raise ValueError(f"a raw DLQ record lacks the {name} header")
        return found.decode("utf-8", errors="replace")

    originals = int(text(h.DLQ_ORIGINAL_HEADERS))
    timestamp = h.header(headers, h.DLQ_SOURCE_TIMESTAMP)
    cut = h.header(headers, h.DLQ_VALUE_BYTES)
    return DlqEnvelope(
        route=text(h.ROUTE),
        handler=text(h.DLQ_HANDLER),
        source_topic=text(h.SOURCE_TOPIC),
        source_partition=int(text(h.SOURCE_PARTITION)),
        source_offset=int(text(h.SOURCE_OFFSET)),
        source_timestamp_ms=int(timestamp) if timestamp is not None else None,
        key=key,
        value=value,
        headers=list(headers[:originals]),
        error_class=text(h.DLQ_ERROR_CLASS),
        error_message=text(h.DLQ_ERROR_MESSAGE),
        stage=text(h.DLQ_STAGE),
        attempts=int(text(h.DLQ_ATTEMPTS)),
        failed_at=datetime.fromisoformat(text(h.DLQ_FAILED_AT)),
        processor_version=text(h.PROCESSOR_VERSION),
        value_bytes=int(cut) if cut is not None else None,
    )


class DlqCap:
    """Counts dead-lettered events over a sliding window and trips when too many die.

    Call ``record(dead)`` once per finished event, or ``passed(n)`` for ``n`` events in
    a row that were not dead. It raises ``DlqCapExceeded`` when, after at least
    ``min_events`` events, more than ``max_ratio`` of the last ``window`` were dead, or
    when ``max_consecutive`` events in a row were dead. Only the dead events are kept
    (their sequence numbers), so a run of good events costs O(1) whatever its length.
    """

    def __init__(self, settings: DlqSettings) -> None:
        self._settings = settings
        self._dead: deque[int] = deque()  # sequence numbers of dead events in the window
        self._seen = 0
        self._consecutive = 0

    @property
    def ratio(self) -> float:
        """Share of dead events among the last ``window`` (0.0 before any event)."""
        seen = min(self._seen, self._settings.window)
        return len(self._dead) / seen if seen else 0.0

    @property
    def consecutive(self) -> int:
        """Dead events in a row, up to the latest one."""
        return self._consecutive

    @property
    def near_limit(self) -> bool:
        """True at 80 % of either limit; the ratio only counts once ``min_events`` were
        seen, so the first failure after start-up (ratio 1.0) raises no alarm."""
        s = self._settings
        ratio_near = self._seen >= s.min_events and self.ratio >= NEAR_LIMIT_SHARE * s.max_ratio
        return ratio_near or self._consecutive >= NEAR_LIMIT_SHARE * s.max_consecutive

    def record(self, dead: bool) -> None:
        """Count one finished event; raise ``DlqCapExceeded`` if a limit is now exceeded."""
        if not dead:
            self.passed(1)
            return
        s = self._settings
        self._seen += 1
        self._dead.append(self._seen)
        self._slide(self._seen)
        self._consecutive += 1
        if self._consecutive >= s.max_consecutive:
            self._trip(
                f"{self._consecutive} consecutive events were dead-lettered "
                f"(dlq.max_consecutive = {s.max_consecutive})"
            )
        self._check_ratio(self._seen)

    def passed(self, events: int) -> None:
        """Count ``events`` finished events in a row that were not dead-lettered."""
        if events <= 0:
            return
        first = self._seen + 1
        self._seen += events
        self._consecutive = 0
        if self._dead:
            # Good events only lower the ratio, so within the run it is highest at its
            # first event that counts (``min_events`` seen): check it there, as one
            # ``record(False)`` at a time would have.
            at = max(first, self._settings.min_events)
            if at <= self._seen:
                self._slide(at)
                self._check_ratio(at)
            self._slide(self._seen)

    def _slide(self, seen: int) -> None:
        """Forget the dead events outside the window that ends at event ``seen``."""
        dead, oldest = self._dead, seen - self._settings.window
        while dead and dead[0] <= oldest:
            dead.popleft()

    def _check_ratio(self, seen: int) -> None:
        """Trip if the window ending at event ``seen`` (slid there) is over the ratio."""
        s = self._settings
        counted = min(seen, s.window)
        ratio = len(self._dead) / counted
        if seen >= s.min_events and ratio > s.max_ratio:
            self._trip(
                f"{len(self._dead)} of the last {counted} events were dead-lettered "
                f"(ratio {ratio:.2f} > dlq.max_ratio {s.max_ratio})"
            )

    def _trip(self, reason: str) -> NoReturn:
        # Imported here: the dlq commands in stream.cli import this module.
        from stream.cli.command import sluicegate_command  # noqa: PLC0415

        command = sluicegate_command()  # `.venv/bin/sluicegate` when not on PATH
        raise DlqCapExceeded(
            f"{reason}; stopping instead of draining the topic into the DLQ. Check the DLQ "
            f"with `{command} dlq inspect --topic {self._settings.topic}`, fix the cause, "
            f"then `{command} dlq replay --topic {self._settings.topic}` the failed events."
        )
