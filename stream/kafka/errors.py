"""The one place where confluent-kafka's errors become ours.

librdkafka knows whether an error is fatal or needs the transaction aborted, but its
delivery reports say ``retriable() == False`` even for timeouts and leader changes, so
what a failed delivery means is decided here by error code: retriable (an outage: send
again, never dead-letter), too large (dead-letter), a deployment fault (missing topic,
no permission: stop), or else a fault of the record.
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
# Outages of the cluster or of one partition's leader: the same record succeeds later.
_RETRIABLE = {
    RdKafkaError._MSG_TIMED_OUT,
    RdKafkaError._TIMED_OUT,
    RdKafkaError._TRANSPORT,
    RdKafkaError._ALL_BROKERS_DOWN,
    RdKafkaError._QUEUE_FULL,
    RdKafkaError._RETRY,
    RdKafkaError._WAIT_COORD,
    RdKafkaError._NODE_UPDATE,
    RdKafkaError.REQUEST_TIMED_OUT,
    RdKafkaError.NOT_LEADER_FOR_PARTITION,
    RdKafkaError.LEADER_NOT_AVAILABLE,
    RdKafkaError.BROKER_NOT_AVAILABLE,
    RdKafkaError.NOT_ENOUGH_REPLICAS,
    RdKafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    RdKafkaError.NETWORK_EXCEPTION,
    RdKafkaError.KAFKA_STORAGE_ERROR,
    RdKafkaError.UNKNOWN_LEADER_EPOCH,
    RdKafkaError.FENCED_LEADER_EPOCH,
    RdKafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    RdKafkaError.COORDINATOR_NOT_AVAILABLE,
    RdKafkaError.NOT_COORDINATOR,
}
# The topic is missing or closed to us: the deployment is wrong, not the event.
_CONFIG = {
    RdKafkaError.UNKNOWN_TOPIC_OR_PART,
    RdKafkaError._UNKNOWN_TOPIC,
    RdKafkaError._UNKNOWN_PARTITION,
    RdKafkaError.TOPIC_AUTHORIZATION_FAILED,
    RdKafkaError.CLUSTER_AUTHORIZATION_FAILED,
    RdKafkaError.TOPIC_EXCEPTION,
    RdKafkaError.POLICY_VIOLATION,
}
_TOO_LARGE = {
    RdKafkaError.MSG_SIZE_TOO_LARGE,
    RdKafkaError.RECORD_LIST_TOO_LARGE,
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
    return ProduceFailed(
        message,
        code,
        retriable=bool(err.retriable()) or err.code() in _RETRIABLE,
        too_large=err.code() in _TOO_LARGE,
        config=err.code() in _CONFIG,
    )
