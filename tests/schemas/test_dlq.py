"""DlqEnvelope keeps the failed record's bytes exactly through its JSON form."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.dlq import DlqEnvelope

FAILED_AT = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


def envelope(
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: list[tuple[str, bytes]] | None = None,
    failed_at: datetime = FAILED_AT,
) -> DlqEnvelope:
    return DlqEnvelope(
        route="reviews",
        handler="sentiment",
        source_topic="demo.reviews",
        source_partition=2,
        source_offset=41,
        source_timestamp_ms=1_767_322_000_000,
        key=key,
        value=value,
        headers=headers or [],
        error_class="BadInput",
        error_message="line 1: not JSON",
        stage="decode",
        attempts=1,
        failed_at=failed_at,
        processor_version="0.1.0",
    )


@given(
    key=st.none() | st.binary(),
    value=st.none() | st.binary(),
    headers=st.lists(st.tuples(st.text(), st.binary())),
)
def test_json_round_trip_preserves_bytes(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    """Any key, value and headers (order and duplicates too) survive to_json/from_json."""
    original = envelope(key, value, headers)
    back = DlqEnvelope.from_json(original.to_json())
    assert back == original
    assert (back.key, back.value, back.headers) == (key, value, headers)


def test_invalid_utf8_null_bytes_and_large_values_survive() -> None:
    """Invalid UTF-8, null bytes and a 10 MB value come back byte for byte."""
    value = b"\xff\xfe\x00{not json}\x00" + bytes(range(256)) * 40_960
    assert len(value) > 10_000_000
    back = DlqEnvelope.from_json(envelope(b"\x00\xc3", value).to_json())
    assert back.key == b"\x00\xc3"
    assert back.value == value


def test_json_is_plain_json_with_base64_bytes() -> None:
    """The value is ordinary JSON: bytes appear as base64 text, never as raw bytes."""
    data = orjson.loads(envelope(b"\xff", b"\x00\x01", [("h", b"\xfe")]).to_json())
    assert data["schema_version"] == 1
    assert data["key"] == "_w=="
    assert data["value"] == "AAE="
    assert data["headers"] == [["h", "_g=="]]


def test_failed_at_is_normalised_to_utc_and_must_be_aware() -> None:
    """An aware time in another zone is stored as UTC; a naive time is rejected."""
    plus_two = FAILED_AT.astimezone(timezone(timedelta(hours=2)))
    assert envelope(failed_at=plus_two).failed_at.utcoffset() == timedelta(0)
    assert envelope(failed_at=plus_two).failed_at == FAILED_AT
    with pytest.raises(ValidationError):
        envelope(failed_at=FAILED_AT.replace(tzinfo=None))


def test_not_an_envelope_raises_validation_error() -> None:
    """Bytes that are not an envelope raise ValidationError, which the CLI counts."""
    with pytest.raises(ValidationError):
        DlqEnvelope.from_json(b"\xff not json")


def test_schemas_import_nothing_from_stream_or_handlers() -> None:
    """schemas.dlq loads without stream or handlers: the arrows point one way only."""
    code = (
        "import sys, schemas.dlq; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('stream', 'handlers')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
