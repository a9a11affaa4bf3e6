"""The producer side: idempotent, or transactional for exactly-once.

librdkafka calls delivery callbacks from whichever thread polls the producer. A thread
of ours polls it; the callbacks only collect results, and each poll hands the whole batch
to the event loop with one ``call_soon_threadsafe``, so futures and offsets are only ever
touched on the loop. Blocking transactional calls run on a separate thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer, TopicPartition

from stream.config import KafkaSettings, LibrdkafkaValue
from stream.errors import KafkaError, ProducerFenced, TransactionAborted
from stream.kafka.errors import map_kafka_error
from stream.records import OutRecord

log = logging.getLogger(__name__)

TP = tuple[str, int]
DeliveryCallback = Callable[[KafkaError | None], None]


def producer_config(
    kafka: KafkaSettings, *, transactional_id: str | None, transaction_timeout_ms: int
) -> dict[str, LibrdkafkaValue]:
    conf: dict[str, LibrdkafkaValue] = {
        **kafka.client_config(),
        "linger.ms": 5,
        "compression.type": "lz4",
        **kafka.producer_extra,
        # Not overridable: no duplicates from producer retries, full acknowledgement.
        "enable.idempotence": True,
        "acks": "all",
    }
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = transaction_timeout_ms
    return conf


class Sink:
    """Produces records; reports each delivery on the event loop."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        transactional_id: str | None = None,
        transaction_timeout_ms: int = 60000,
    ) -> None:
        self._conf = producer_config(
            kafka, transactional_id=transactional_id, transaction_timeout_ms=transaction_timeout_ms
        )
        self.transactional = transactional_id is not None
        self._txn_timeout_s = transaction_timeout_ms / 1000
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._results: list[tuple[DeliveryCallback, KafkaError | None]] = []
        self._results_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._blocking = ThreadPoolExecutor(1, thread_name_prefix="sluicegate-txn")
        self._in_txn = False

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("Sink.start() was not called")
        return self._producer

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(dict(self._conf), logger=log)
        self._poller = threading.Thread(target=self._poll, name="sluicegate-producer", daemon=True)
        self._poller.start()
        if self.transactional:
            await self._blocking_call("initialising transactions", self._init_transactions)

    def _init_transactions(self) -> None:
        self.producer.init_transactions(self._txn_timeout_s)

    # --- at-least-once: produce now, report each delivery ------------------------------

    def send_nowait(self, record: OutRecord, on_delivery: DeliveryCallback | None = None) -> None:
        """Queue ``record``; ``on_delivery`` is called on the loop with None or the error.

        Raises ``BufferError`` when librdkafka's queue is full (use ``send`` to wait).
        """
        try:
            self.producer.produce(
                record.topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                on_delivery=None if on_delivery is None else _Collect(self, on_delivery),
            )
        except KafkaException as exc:
            raise map_kafka_error(exc, f"producing to {record.topic}") from None

    async def send(self, record: OutRecord, on_delivery: DeliveryCallback | None = None) -> None:
        """``send_nowait``, waiting (without blocking the loop) while the queue is full."""
        while True:
            try:
                self.send_nowait(record, on_delivery)
            except BufferError:
                await asyncio.sleep(0.005)
            else:
                return

    def _collect(self, on_delivery: DeliveryCallback, error: KafkaError | None) -> None:
        with self._results_lock:
            self._results.append((on_delivery, error))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)
            self._hand_over()

    def _hand_over(self) -> None:
        with self._results_lock:
            batch, self._results = self._results, []
        if batch and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(_deliver, batch)

    # --- exactly-once: outputs and offsets in one transaction --------------------------

    async def commit_transaction(
        self,
        records: Iterable[OutRecord],
        offsets: Mapping[TP, int],
        group_metadata: object,
    ) -> None:
        """Produce ``records`` and commit ``offsets`` atomically.

        Raises ``TransactionAborted`` (nothing was committed; retry) or ``ProducerFenced``
        (this producer is unusable; recreate it).
        """
        try:
            if not self._in_txn:
                self.producer.begin_transaction()
                self._in_txn = True
            for record in records:
                await self.send(record)
            parts = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            if parts:
                await self._blocking_call(
                    "sending offsets to the transaction",
                    lambda: self.producer.send_offsets_to_transaction(
                        parts, group_metadata, self._txn_timeout_s
                    ),
                )
            await self._blocking_call(
                "committing the transaction",
                lambda: self.producer.commit_transaction(self._txn_timeout_s),
            )
            self._in_txn = False
        except ProducerFenced:
            raise
        except KafkaError as exc:
            await self._abort()
            raise TransactionAborted(str(exc), exc.code) from None

    async def _abort(self) -> None:
        if not self._in_txn:
            return
        await self._blocking_call(
            "aborting the transaction", lambda: self.producer.abort_transaction(self._txn_timeout_s)
        )
        self._in_txn = False

    async def _blocking_call(self, doing: str, call: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._blocking, call)
        except KafkaException as exc:
            raise map_kafka_error(exc, doing) from None

    # --- lifecycle ---------------------------------------------------------------------

    async def flush(self, wait_s: float) -> int:
        """Wait for queued records; return how many are still undelivered."""
        loop = asyncio.get_running_loop()
        remaining: int = await loop.run_in_executor(self._blocking, self.producer.flush, wait_s)
        self._hand_over()
        return remaining

    async def close(self, wait_s: float = 30.0) -> int:
        """Flush, abort an open transaction, stop the poller; idempotent."""
        if self._producer is None:
            self._blocking.shutdown(wait=False)
            return 0
        remaining = 0
        try:
            if self.transactional and self._in_txn:
                await self._abort()
            remaining = await self.flush(wait_s)
        except KafkaError as exc:
            log.warning("closing the producer: %s", exc)
        finally:
            self._stop.set()
            if self._poller is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._poller.join)
            self._hand_over()
            self._blocking.shutdown(wait=True)
            self._producer.close()
            self._producer = None
        return remaining


class _Collect:
    """The per-record delivery callback librdkafka calls on the polling thread; it only
    collects the result for the loop."""

    __slots__ = ("on_delivery", "sink")

    def __init__(self, sink: Sink, on_delivery: DeliveryCallback) -> None:
        self.sink = sink
        self.on_delivery = on_delivery

    def __call__(self, err: RdKafkaError | None, _msg: Message) -> None:
        mapped = None if err is None else map_kafka_error(err, "delivering")
        self.sink._collect(self.on_delivery, mapped)


def _deliver(batch: list[tuple[DeliveryCallback, KafkaError | None]]) -> None:
    for callback, error in batch:
        callback(error)
