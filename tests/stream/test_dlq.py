"""dead_letter() builds the DLQ record; DlqCap stops a deploy that dead-letters everything."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.dlq import DlqEnvelope
from stream import __version__
from stream.config import DlqSettings
from stream.dlq import (
    HEADER_MESSAGE_LIMIT,
    DlqCap,
    dead_letter,
    error_class_name,
    from_raw,
    is_raw,
)
from stream.errors import BadInput, DlqCapExceeded
from stream.kafka import headers as h
from stream.records import SourceRecord

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
RECORD = SourceRecord(
    topic="demo.reviews",
    partition=2,
    offset=41,
    key=b"\x00key",
    value=b"\xff\xfe not utf-8 \x00",
    headers=(("trace", b"a"), ("trace", b"b"), ("bin", b"\x00\xff")),
    timestamp_ms=1_767_322_000_000,
)


def letter(
    error: BaseException, *, stage: str | None = None, now: datetime = NOW
) -> tuple[DlqEnvelope, dict[str, bytes | None]]:
    """The envelope and the headers (last value per name) of dead-lettering RECORD."""
    out = dead_letter(
        RECORD, error, topic="dlq", route="reviews", handler="sentiment", stage=stage, now=now
    )
    return DlqEnvelope.from_json(out.value), dict(out.headers)


def test_dead_letter_keeps_the_original_and_says_why() -> None:
    """The DLQ record has the original key, the DLQ topic, and an envelope with the
    original bytes, headers and every field about the failure."""
    out = dead_letter(
        RECORD, BadInput("not JSON"), topic="sluicegate.dlq", route="reviews",
        handler="sentiment", attempts=3, now=NOW,
    )  # fmt: skip
    assert out.topic == "sluicegate.dlq"
    assert out.key == RECORD.key
    env = DlqEnvelope.from_json(out.value)
    assert (env.source_topic, env.source_partition, env.source_offset) == ("demo.reviews", 2, 41)
    assert (env.key, env.value) == (RECORD.key, RECORD.value)
    assert env.headers == list(RECORD.headers)
    assert env.source_timestamp_ms == RECORD.timestamp_ms
    assert (env.route, env.handler, env.stage, env.attempts) == (
        "reviews",
        "sentiment",
        "decode",
        3,
    )
    assert (env.error_class, env.error_message) == ("BadInput", "not JSON")
    assert env.failed_at == NOW
    assert env.processor_version == __version__


def test_dead_letter_headers_are_the_originals_then_ours() -> None:
    """Headers: the originals first, in order with duplicates, then the trace and DLQ ones."""
    out = dead_letter(
        RECORD, BadInput("not JSON"), topic="dlq", route="reviews", handler="sentiment", now=NOW
    )
    assert out.headers[:3] == RECORD.headers
    assert dict(out.headers[3:]) == {
        h.SOURCE_TOPIC: b"demo.reviews",
        h.SOURCE_PARTITION: b"2",
        h.SOURCE_OFFSET: b"41",
        h.PROCESSOR_VERSION: __version__.encode(),
        h.ROUTE: b"reviews",
        h.DLQ_ERROR_CLASS: b"BadInput",
        h.DLQ_ERROR_MESSAGE: b"not JSON",
        h.DLQ_STAGE: b"decode",
        h.DLQ_ATTEMPTS: b"1",
        h.DLQ_FAILED_AT: b"2026-03-04T05:06:07+00:00",
        h.DLQ_SOURCE_TIMESTAMP: b"1767322000000",
        h.DLQ_FORMAT: b"envelope",
    }


def test_an_envelope_too_large_for_a_record_goes_raw() -> None:
    """Near the producer's limit the base64 envelope would not fit: the record carries
    the original value itself and the facts in headers, and reads back as the same
    envelope (but for the error message, cut as in its header)."""
    big = RECORD._replace(value=b"\xff" + bytes(range(256)) * 3000)  # ~768 KB, not UTF-8
    error = BadInput("not JSON")
    enveloped = dead_letter(big, error, topic="dlq", route="r", handler="logs", now=NOW,
                            max_bytes=10**9)  # fmt: skip
    raw = dead_letter(big, error, topic="dlq", route="r", handler="logs", now=NOW,
                      max_bytes=1_000_000)  # fmt: skip
    assert len(enveloped.value) > 1_000_000  # what would have been refused
    assert is_raw(raw.headers)
    assert not is_raw(enveloped.headers)
    assert raw.value == big.value
    assert raw.key == big.key
    assert raw.headers[:3] == big.headers
    assert from_raw(raw.key, raw.value, raw.headers) == DlqEnvelope.from_json(enveloped.value)
    small = dead_letter(RECORD, error, topic="dlq", route="r", handler="logs", max_bytes=1_000_000)
    assert not is_raw(small.headers)


def test_a_raw_record_missing_a_header_is_refused_by_name() -> None:
    raw = dead_letter(RECORD._replace(value=b"x" * 5000), BadInput("x"), topic="dlq",
                      route="r", handler="logs", max_bytes=4000)  # fmt: skip
    assert is_raw(raw.headers)
    headers = tuple((k, v) for k, v in raw.headers if k != h.DLQ_STAGE)
    with pytest.raises(ValueError, match=h.DLQ_STAGE):
        from_raw(raw.key, raw.value, headers)


def test_stage_defaults_to_handler_and_can_be_given() -> None:
    """Errors without a stage count as 'handler'; an explicit stage wins."""
    assert letter(ValueError("x"))[0].stage == "handler"
    assert letter(BadInput("x"), stage="model")[0].stage == "model"


def test_error_class_is_qualified_for_foreign_errors() -> None:
    """Our and builtin errors keep their short name; others carry their module."""
    assert error_class_name(BadInput("x")) == "BadInput"
    assert error_class_name(KeyError("x")) == "KeyError"
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads("{")
    assert error_class_name(caught.value) == "json.decoder.JSONDecodeError"


def test_long_and_unencodable_messages_never_break_dead_lettering() -> None:
    """A huge message is cut to 1000 chars in the header; lone surrogates are escaped."""
    env, headers = letter(ValueError("x" * 5000 + "\udcff"))
    assert len((headers[h.DLQ_ERROR_MESSAGE] or b"").decode()) == HEADER_MESSAGE_LIMIT
    assert env.error_message.endswith("\\udcff")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("broken __str__")


def test_an_error_that_cannot_be_printed_is_still_dead_lettered() -> None:
    """A broken __str__ on the error does not stop dead-lettering."""
    env, _ = letter(_Unprintable())
    assert env.error_message == "<str() of _Unprintable failed>"


def _send_request() -> None:
    raise RuntimeError("Authorization: Bearer sk-secret")


def _call_model() -> None:
    try:
        _send_request()
    except RuntimeError as inner:
        raise ValueError("model call failed") from inner


def test_only_str_of_the_error_is_recorded() -> None:
    """Neither the chained cause nor the traceback reaches the DLQ, so secrets held there
    stay out."""
    with pytest.raises(ValueError, match="model call failed") as caught:
        _call_model()
    out = dead_letter(RECORD, caught.value, topic="dlq", route="r", handler="x", now=NOW)
    assert b"sk-secret" not in out.value
    assert all(b"sk-secret" not in (value or b"") for _, value in out.headers)


def test_time_is_utc_and_must_be_aware() -> None:
    """failed_at is stored in UTC; a naive `now` is refused rather than guessed."""
    env, _ = letter(ValueError("x"), now=NOW.astimezone(timezone(timedelta(hours=-5))))
    assert env.failed_at == NOW
    assert env.failed_at.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        letter(ValueError("x"), now=NOW.replace(tzinfo=None))


def cap(**kwargs: float) -> DlqCap:
    return DlqCap(DlqSettings(**kwargs))


def test_ratio_trips_after_min_events() -> None:
    """Once min_events were seen, a dead share above max_ratio raises DlqCapExceeded."""
    limiter = cap(max_ratio=0.5, window=10, min_events=10, max_consecutive=100)
    for dead in [True, False] * 2 + [True] * 5:
        limiter.record(dead)  # 9 events: below min_events, however many died
    with pytest.raises(DlqCapExceeded, match=r"8 of the last 10 events .*sluicegate dlq inspect"):
        limiter.record(True)


def test_no_trip_below_min_events() -> None:
    """Every event dead, but fewer than min_events: no trip, only a ratio of 1.0."""
    limiter = cap(max_ratio=0.5, window=100, min_events=50, max_consecutive=1000)
    for _ in range(49):
        limiter.record(True)
    assert limiter.ratio == 1.0
    assert limiter.consecutive == 49


def test_consecutive_trips() -> None:
    """max_consecutive dead events in a row trip the cap even below min_events."""
    limiter = cap(max_ratio=1.0, window=100, min_events=100, max_consecutive=3)
    for dead in (True, True, False, True, True):
        limiter.record(dead)
    assert limiter.consecutive == 2
    with pytest.raises(DlqCapExceeded, match="3 consecutive events"):
        limiter.record(True)


def test_window_slides_so_old_deaths_expire() -> None:
    """Deaths older than the window no longer count toward the ratio."""
    limiter = cap(max_ratio=0.5, window=4, min_events=4, max_consecutive=100)
    for dead in (True, True, False, False):
        limiter.record(dead)
    assert limiter.ratio == 0.5
    limiter.record(False)
    limiter.record(False)
    assert limiter.ratio == 0.0
    limiter.record(True)
    limiter.record(True)
    assert limiter.ratio == 0.5
    with pytest.raises(DlqCapExceeded):
        limiter.record(True)


def test_near_limit_at_eighty_percent() -> None:
    """near_limit turns on at 80 % of the ratio (after min_events) or of max_consecutive."""
    limiter = cap(max_ratio=0.5, window=10, min_events=10, max_consecutive=5)
    for dead in [True, False] * 3:
        limiter.record(dead)
    assert not limiter.near_limit  # ratio 0.5, but only 6 of 10 events seen
    for dead in [False] * 4:
        limiter.record(dead)
    assert limiter.ratio == 0.3  # T F T F T F F F F F
    limiter.record(True)  # F T F T F F F F F T: still 0.3
    assert not limiter.near_limit
    limiter.record(True)  # T F T F F F F F T T: 0.4 = 0.8 * max_ratio
    assert limiter.near_limit
    streak = cap(max_ratio=1.0, window=10, min_events=10, max_consecutive=5)
    for _ in range(3):
        streak.record(True)
    assert not streak.near_limit
    streak.record(True)
    assert streak.near_limit


class _ReferenceCap:
    """The DLQ cap's rules written the obvious way: every event kept in a list."""

    def __init__(self, settings: DlqSettings) -> None:
        self.s = settings
        self.events: list[bool] = []

    def record(self, dead: bool) -> str | None:
        self.events.append(dead)
        window = self.events[-self.s.window :]
        streak = (
            len(self.events) - 1 - max((i for i, d in enumerate(self.events) if not d), default=-1)
        )
        if streak >= self.s.max_consecutive:
            return "consecutive"
        if len(self.events) >= self.s.min_events and sum(window) / len(window) > self.s.max_ratio:
            return "ratio"
        return None


@given(
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 30)), max_size=40),
    window=st.integers(1, 40),
    min_events=st.integers(1, 60),
    max_consecutive=st.integers(1, 50),
    max_ratio=st.sampled_from([0.1, 0.25, 0.5, 0.9, 1.0]),
)
def test_runs_of_good_events_count_like_one_at_a_time(
    runs: list[tuple[bool, int]], window: int, min_events: int, max_consecutive: int,
    max_ratio: float,
) -> None:  # fmt: skip
    """``passed(n)`` after any history trips exactly where n calls of ``record(False)``
    would, and leaves the same ratio and streak as the reference rules."""
    settings = DlqSettings(
        window=window, min_events=min_events, max_consecutive=max_consecutive,
        max_ratio=max_ratio,
    )  # fmt: skip
    limiter, reference = DlqCap(settings), _ReferenceCap(settings)
    for dead, length in runs:
        expected = None
        for _ in range(length):
            expected = expected or reference.record(dead)
        tripped = ""
        try:
            if dead:
                for _ in range(length):
                    limiter.record(True)
            else:
                limiter.passed(length)
        except DlqCapExceeded as exc:
            tripped = str(exc)
        if expected is not None:
            assert expected in tripped
            return
        assert not tripped
        recent = reference.events[-window:]
        assert limiter.ratio == pytest.approx(sum(recent) / len(recent))


def test_null_header_value_stays_null() -> None:
    """A NULL header value arrives as None and stays null in the envelope (not b"")."""
    headers = h.header_tuples([("trace", None), ("empty", b""), ("s", "x")])
    assert headers == (("trace", None), ("empty", b""), ("s", b"x"))
    record = RECORD._replace(headers=headers)
    out = dead_letter(record, ValueError("bad"), topic="dlq", route="r", handler="x", now=NOW)
    envelope = DlqEnvelope.from_json(out.value)
    assert envelope.headers[:3] == [("trace", None), ("empty", b""), ("s", b"x")]
    assert b'["trace",null]' in out.value
    assert out.headers[0] == ("trace", None)
