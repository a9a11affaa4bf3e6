"""confluent-kafka errors become ours at one boundary, each with a retry decision."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from stream.errors import (
    KafkaError,
    KafkaUnavailable,
    ProduceFailed,
    ProducerFenced,
    TransactionAborted,
)
from stream.kafka.errors import map_kafka_error

ALL_CODES = sorted(
    {
        v
        for k, v in vars(RdKafkaError).items()
        if k.isupper() or (k.startswith("_") and k[1:].isupper())
    }
    - {None}
)


@pytest.mark.parametrize("code", [c for c in ALL_CODES if isinstance(c, int)])
def test_every_librdkafka_code_is_mapped(code: int) -> None:
    """No librdkafka error code escapes the tree: each maps to a KafkaError with a bool
    retry decision and a message that names what was being done."""
    mapped = map_kafka_error(RdKafkaError(code), "testing")
    assert isinstance(mapped, KafkaError)
    assert isinstance(mapped.retriable, bool)
    assert str(mapped).startswith("testing: ")


@pytest.mark.parametrize(
    ("error", "expected", "retriable"),
    [
        (RdKafkaError(RdKafkaError._TRANSPORT), KafkaUnavailable, True),
        (RdKafkaError(RdKafkaError._ALL_BROKERS_DOWN), KafkaUnavailable, True),
        (RdKafkaError(RdKafkaError.MSG_SIZE_TOO_LARGE), ProduceFailed, False),
        (RdKafkaError(RdKafkaError.NOT_ENOUGH_REPLICAS, retriable=True), ProduceFailed, True),
        (RdKafkaError(RdKafkaError._STATE, txn_requires_abort=True), TransactionAborted, True),
        (RdKafkaError(RdKafkaError._FENCED, fatal=True), ProducerFenced, False),
        (RdKafkaError(RdKafkaError.PRODUCER_FENCED), ProducerFenced, False),
    ],
)
def test_classes_and_retry_decisions(
    error: RdKafkaError, expected: type[KafkaError], retriable: bool
) -> None:
    """Transport trouble is retriable, fatal errors fence, abortable ones abort."""
    mapped = map_kafka_error(error, "producing")
    assert type(mapped) is expected
    assert mapped.retriable is retriable
    assert mapped.code == error.name()


def test_kafka_exception_is_unwrapped() -> None:
    """A KafkaException carrying a KafkaError maps like the error itself."""
    wrapped = KafkaException(RdKafkaError(RdKafkaError._ALL_BROKERS_DOWN))
    assert isinstance(map_kafka_error(wrapped, "consuming"), KafkaUnavailable)
