"""The project's error tree. Every error says whether retrying it can help.

    SluicegateError              retriable = False unless a subclass says otherwise
    ├── ConfigError              a bad setting; names the key and what is accepted
    ├── KafkaError               mapped from confluent-kafka in stream/kafka/errors.py
    │   ├── KafkaUnavailable     retriable: brokers unreachable, timeouts
    │   ├── ProduceFailed        a delivery report said no; ``kind`` says what to do
    │   ├── OutputUnavailable    an output topic is missing or may not be written: stop
    │   ├── TransactionAborted   retriable: abort, rewind, redo the transaction
    │   └── ProducerFenced       not retriable for this producer: recreate it
    ├── EventError               a fault of one event: it goes to the DLQ (schemas/errors.py)
    │   └── BadInput             the bytes cannot be decoded as the route expects
    ├── DlqCapExceeded           too many events dead-lettered: stop, do not drain
    └── ... the model client and handlers add theirs

Third-party errors are mapped into this tree at exactly one boundary per library, so the
runtime needs one rule only: retry what is retriable, dead-letter per-event faults.
"""

from __future__ import annotations

from schemas.errors import BadInput, EventError, SluicegateError

__all__ = [
    "BadInput",
    "ConfigError",
    "DlqCapExceeded",
    "EventError",
    "KafkaError",
    "KafkaUnavailable",
    "OutputUnavailable",
    "ProduceFailed",
    "ProducerFenced",
    "SluicegateError",
    "TransactionAborted",
]


class ConfigError(SluicegateError):
    """The configuration is invalid; raised before anything connects anywhere."""


class KafkaError(SluicegateError):
    """A Kafka operation failed; ``code`` is librdkafka's error name when there is one."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class KafkaUnavailable(KafkaError):
    """The cluster did not answer in time; the message names the address to check."""

    retriable = True


class ProduceFailed(KafkaError):
    """A record was not acknowledged. ``too_large``: the record exceeds what the producer
    or the topic takes (it can only be dead-lettered, or shrunk if it is a dead letter);
    ``config``: the topic is missing or may not be written, a fault of the deployment
    that dead-lettering would only hide."""

    def __init__(
        self,
        message: str,
        code: str | None = None,
        *,
        retriable: bool,
        too_large: bool = False,
        config: bool = False,
    ) -> None:
        super().__init__(message, code)
        self.retriable = retriable
        self.too_large = too_large
        self.config = config


class OutputUnavailable(KafkaError):
    """An output topic does not exist or this client may not write to it: every event
    would fail the same way, so the processor stops and names the topic."""

    fatal = True


class TransactionAborted(KafkaError):
    """The transaction was aborted; its records are discarded and must be produced again."""

    retriable = True


class ProducerFenced(KafkaError):
    """Another producer with our transactional id took over, or the producer hit a fatal
    error: this instance can no longer be used."""


class ProducerStuck(ProducerFenced):
    """A transactional call did not return long after its own timeout (librdkafka can
    wait forever for a group coordinator that went away): the producer is given up and a
    new one, with the same transactional id, fences it."""


class DlqCapExceeded(SluicegateError):
    """The dead-letter cap tripped: something is broken for every event, so stop."""
