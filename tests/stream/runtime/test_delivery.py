"""Delivery reports of a fast-path run: unbound, told apart by the output's key and value."""

from __future__ import annotations

from collections import deque

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import Message

from schemas.records import SourceRecord
from stream.runtime.atleastonce import failed_in_run
from stream.runtime.delivery import Delivery, Failure

SENT = [SourceRecord("in", 0, o, b"k%d" % (o % 2), b"v") for o in range(4)]
VALUES = [b"a", b"b", b"a", b"c"]  # offsets 0 and 2: the same key and value


def failure(key: bytes | None, value: bytes | None) -> Failure:
    """What ``Delivery.report`` records for a failed, unbound report."""
    ready: deque[Delivery] = deque()
    delivery = Delivery(ready, lambda _failures: None)
    delivery.report(RdKafkaError(RdKafkaError.MSG_SIZE_TOO_LARGE), Message(key=key, value=value))
    (reported,) = delivery.failures
    return reported


def test_a_report_is_matched_by_key_and_value() -> None:
    failed = failed_in_run(SENT, VALUES, [failure(b"k1", b"b")])
    assert set(failed) == {1}
    error, msg = failed[1]
    assert error.code == "MSG_SIZE_TOO_LARGE"
    assert msg is not None


def test_outputs_alike_all_count_as_failed() -> None:
    """Offsets 0 and 2 made the same output: which one failed is unknown, both go again."""
    assert set(failed_in_run(SENT, VALUES, [failure(b"k0", b"a")])) == {0, 2}


def test_an_unmatched_or_bound_report() -> None:
    """No output looks like the report: all count as failed. A bound index is exact."""
    assert set(failed_in_run(SENT, VALUES, [failure(b"zz", b"zz")])) == {0, 1, 2, 3}
    (index, error, _msg) = failure(b"k1", b"c")
    assert set(failed_in_run(SENT, VALUES, [(3, error, None)])) == {3}
    assert set(failed_in_run(SENT, VALUES, [(-1, error, None)])) == {0, 1, 2, 3}
    assert index == -1


def test_reports_complete_the_delivery_once_sealed() -> None:
    ready: deque[Delivery] = deque()
    done: list[list[Failure]] = []
    delivery = Delivery(ready, done.append)
    delivery.report(None, Message(value=b"a"))
    delivery.seal(2)
    assert not ready
    delivery.report(None, Message(value=b"b"))
    assert list(ready) == [delivery]
    delivery.fire()
    delivery.fire()
    assert done == [[]]
