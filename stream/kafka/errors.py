"""The one place where confluent-kafka's errors become ours.

librdkafka already knows whether an error is retriable, fatal, or needs the transaction
aborted; we keep that knowledge in the class and the ``retriable`` flag.
"""

from __future__ import annotations

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException

from stream.errors import (
    KafkaError,
    KafkaUnavailable,
    ProduceFailed,
    ProducerFenced,
    TransactionAborted,
)

_UNAVAILABLE = {
    RdKafkaError._TRANSPORT,
    RdKafkaError._ALL_BROKERS_DOWN,
    RdKafkaError._TIMED_OUT,
    RdKafkaError._RESOLVE,
}
_FENCED = {
    RdKafkaError._FENCED,
    RdKafkaError.PRODUCER_FENCED,
    RdKafkaError.INVALID_PRODUCER_EPOCH,
    RdKafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


def _unwrap(error: RdKafkaError | KafkaException) -> RdKafkaError:
    if isinstance(error, KafkaException):
        inner = error.args[0] if error.args else None
        if isinstance(inner, RdKafkaError):
            return inner
        return RdKafkaError(RdKafkaError._FAIL, str(error))
    return error


def map_kafka_error(error: RdKafkaError | KafkaException, doing: str) -> KafkaError:
    """Translate a librdkafka error met while ``doing`` something into our tree."""
    err = _unwrap(error)
    code = err.name()
    message = f"{doing}: {err.str()} ({code})"
    if err.fatal() or err.code() in _FENCED:
        return ProducerFenced(message, code)
    if err.txn_requires_abort():
        return TransactionAborted(message, code)
    if err.code() in _UNAVAILABLE:
        return KafkaUnavailable(message, code)
    return ProduceFailed(message, code, retriable=bool(err.retriable()))
