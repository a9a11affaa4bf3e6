"""The producer side: idempotent, or transactional for exactly-once.

librdkafka calls delivery callbacks from whichever thread polls the producer; they only
count reports into ``Delivery`` objects (stream/runtime/delivery.py), and a complete delivery
waits in ``ready`` until the event loop runs it, so offsets are only ever touched on the
loop. While the loop queues a burst of outputs (``hold`` .. ``serve``) it serves the
reports itself, right after the burst; otherwise a thread of ours polls and wakes the loop
with one ``call_soon_threadsafe`` per poll that completed something. Blocking
transactional calls run on a separate thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer, TopicPartition

from stream.config import KafkaSettings, LibrdkafkaValue
from stream.errors import KafkaError, ProducerFenced, ProducerStuck, TransactionAborted
from stream.kafka.errors import map_kafka_error
from stream.records import OutRecord
from stream.runtime.delivery import Delivery
from stream.telemetry.logs import librdkafka_logger

log = logging.getLogger(__name__)

TP = tuple[str, int]
T = TypeVar("T")

# How long past its own timeout a transactional call may take before the producer is
# given up: librdkafka's send_offsets_to_transaction() can block for good when the group
# coordinator went away (a broker restart) although it was given a timeout.
STUCK_AFTER_S = 15.0

# The output producer sends a record as soon as it is produced: the records behind it
# still share a request while one is in flight, so moving a backlog is as fast as with
# librdkafka's 5 ms, and a lone event's output does not wait 5 ms for company (both
# measured in BENCHMARKS.md: framework overhead, added latency).
LINGER_MS = 0

# librdkafka's delivery callback: (error or None, the message as delivered)
OnDelivery = Callable[[RdKafkaError | None, Message], None]


def producer_config(
    kafka: KafkaSettings, *, transactional_id: str | None, transaction_timeout_ms: int
) -> dict[str, LibrdkafkaValue]:
    conf: dict[str, LibrdkafkaValue] = {
        **kafka.client_config(),
        "linger.ms": LINGER_MS,
        "compression.type": "lz4",
        **kafka.producer_extra,
        # Not overridable: no duplicates from producer retries, full acknowledgement.
        "enable.idempotence": True,
        "acks": "all",
    }
    if transactional_id is not None:
        conf["transactional.id"] = transactional_id
        conf["transaction.timeout.ms"] = transaction_timeout_ms
        # The commit fails if any record of the transaction was not delivered, so a
        # report per delivered record is of no use, and each would take the GIL from the
        # loop on the thread that serves it.
        conf["delivery.report.only.error"] = True
    return conf


class Sink:
    """Produces records; reports deliveries on the event loop."""

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
        # Complete deliveries, appended by the polling thread, run on the loop.
        self.ready: deque[Delivery] = deque()
        self._wake_pending = False
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        # Clear while the loop serves the reports itself: the poller thread waits, so the
        # two threads do not take the GIL from each other once per report.
        self._loop_free = threading.Event()
        self._loop_free.set()
        self._blocking = _DaemonThreads("sluicegate-txn")
        self._in_txn = False
        # Why records staged into the open transaction may be missing from it: the next
        # commit aborts it instead.
        self._spoiled: Exception | None = None
        self._fatal: KafkaException | None = None  # raised by poll, said once
        self._stuck: str | None = None  # a transactional call that never returned

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("Sink.start() was not called")
        return self._producer

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(dict(self._conf), logger=librdkafka_logger())
        self._poller = threading.Thread(target=self._poll, name="sluicegate-producer", daemon=True)
        self._poller.start()
        if self.transactional:
            await self._blocking_call("initialising transactions", self._init_transactions)

    def _init_transactions(self) -> None:
        self.producer.init_transactions(self._txn_timeout_s)

    # --- at-least-once: produce now, report each delivery ------------------------------

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes | None]],
        on_delivery: OnDelivery | None = None,
    ) -> None:
        """Queue one record; ``on_delivery`` is librdkafka's callback (see ``Delivery``).

        Raises ``BufferError`` when librdkafka's queue is full (use ``send`` to wait), and
        ``KafkaError`` when the record is refused (too large, say).
        """
        try:
            self.producer.produce(
                topic,
                value,
                key,
                headers=headers,  # type: ignore[arg-type] # the stub wants values Optional
                on_delivery=on_delivery,
            )
        except KafkaException as exc:
            raise map_kafka_error(exc, f"producing to {topic}") from None

    def send_nowait(self, record: OutRecord, on_delivery: OnDelivery | None = None) -> None:
        """``produce`` of an ``OutRecord``."""
        self.produce(record.topic, record.value, record.key, list(record.headers), on_delivery)

    async def send(self, record: OutRecord, on_delivery: OnDelivery | None = None) -> None:
        """``send_nowait``, waiting (without blocking the loop) while the queue is full."""
        while True:
            try:
                self.send_nowait(record, on_delivery)
            except BufferError:
                await asyncio.sleep(0.005)
            else:
                return

    def hold(self) -> None:
        """(loop) The loop is about to queue a burst of records and will ``serve`` the
        reports itself afterwards; the poller thread leaves them alone until then."""
        self._loop_free.clear()

    def serve(self) -> None:
        """(loop) Serve the delivery reports that are in, run the complete deliveries,
        and hand the polling back to the poller thread."""
        try:
            self._serve_reports(0)
        finally:
            self._loop_free.set()
        self._run_ready()

    def _poll(self) -> None:
        while not self._stop.is_set():
            if not self._loop_free.wait(0.05):
                continue
            self._serve_reports(0.05)
            if self.ready and not self._wake_pending:
                self.wake()

    def _serve_reports(self, timeout_s: float) -> None:
        """``poll``, which raises a fatal error of the producer (fenced by a newer instance
        with the same transactional id) once. It is logged and left to the next
        transactional call, which raises it as ``ProducerFenced``; the thread that serves
        the reports must not die of it."""
        try:
            self.producer.poll(timeout_s)
        except KafkaException as exc:
            if self._fatal is None:
                self._fatal = exc
                log.warning("the producer can no longer be used: %s", exc.args[0].str())

    def wake(self) -> None:
        """(any thread) Have the loop run the complete deliveries soon."""
        if self._loop is not None and not self._loop.is_closed():
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._run_ready)

    def _run_ready(self) -> None:
        # Cleared before draining: a delivery queued after this line wakes the loop again.
        self._wake_pending = False
        ready = self.ready
        while ready:
            ready.popleft().fire()

    # --- exactly-once: outputs and offsets in one transaction --------------------------

    def _begin(self) -> None:
        if not self._in_txn:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                raise map_kafka_error(exc, "beginning a transaction") from None
            self._in_txn = True

    def stage(self, records: Iterable[OutRecord]) -> None:
        """Produce ``records`` into the open transaction (begun if need be), ahead of its
        commit. If that fails, the next ``commit_transaction`` aborts the transaction and
        raises ``TransactionAborted``: the caller then sends everything again."""
        if self._spoiled is not None:
            return
        try:
            self._begin()
            produce = self.producer.produce
            for record in records:
                produce(record.topic, record.value, record.key, headers=list(record.headers))
        except (BufferError, KafkaException, KafkaError) as exc:
            self._spoiled = exc

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
        if self._spoiled is not None:
            spoiled = self._spoiled
            await self.abort()
            raise TransactionAborted(f"staging records into the transaction: {spoiled}")
        try:
            self._begin()
            produce = self.producer.produce
            for record in records:
                try:  # one call per record; a coroutine each would cost more than producing
                    produce(record.topic, record.value, record.key, headers=list(record.headers))
                except BufferError:
                    await self.send(record)
                except KafkaException as exc:
                    raise map_kafka_error(exc, f"producing to {record.topic}") from None
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
            await self.abort()
            raise TransactionAborted(str(exc), exc.code) from None

    async def abort(self) -> None:
        """Abort the open transaction, if any."""
        self._spoiled = None
        if not self._in_txn:
            return
        await self._blocking_call(
            "aborting the transaction", lambda: self.producer.abort_transaction(self._txn_timeout_s)
        )
        self._in_txn = False

    async def _blocking_call(self, doing: str, call: Callable[[], object]) -> None:
        """``call`` on the transactions thread. One that has not returned
        ``STUCK_AFTER_S`` past the transaction timeout raises ``ProducerStuck``: the
        thread is left to it and this producer is not used again."""
        if self._stuck is not None:
            raise ProducerStuck(f"{doing}: the producer is stuck {self._stuck}")
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._blocking, call)
        try:
            await asyncio.wait_for(asyncio.shield(running), self._txn_timeout_s + STUCK_AFTER_S)
        except TimeoutError:
            self._stuck = f"{doing} (no answer in {self._txn_timeout_s + STUCK_AFTER_S:.0f}s)"
            running.add_done_callback(_ignore_result)
            raise ProducerStuck(f"the producer is stuck {self._stuck}") from None
        except KafkaException as exc:
            raise map_kafka_error(exc, doing) from None

    # --- lifecycle ---------------------------------------------------------------------

    async def flush(self, wait_s: float) -> int:
        """Wait for queued records; return how many are still undelivered."""
        loop = asyncio.get_running_loop()
        remaining: int = await loop.run_in_executor(self._blocking, self.producer.flush, wait_s)
        self._run_ready()
        return remaining

    async def close(self, wait_s: float = 30.0) -> int:
        """Flush, abort an open transaction, stop the poller; idempotent."""
        if self._producer is None:
            self._blocking.shutdown(wait=False)
            return 0
        if self._stuck is not None:
            return await self._abandon()
        remaining = 0
        try:
            if self.transactional and self._in_txn:
                await self.abort()
            remaining = await self.flush(wait_s)
        except KafkaError as exc:
            log.warning("closing the producer: %s", exc)
        finally:
            self._stop.set()
            self._loop_free.set()
            if self._poller is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._poller.join)
            self._run_ready()
            self._blocking.shutdown(wait=True)
            with warnings.catch_warnings():
                # close() aborts a transaction still open and warns when it cannot (a
                # fenced producer); the abort above has already said why.
                warnings.simplefilter("ignore", RuntimeWarning)
                self._producer.close()
            self._producer = None
        return remaining

    async def _abandon(self) -> int:
        """Close a stuck producer without waiting on it: its transactions thread is still
        inside librdkafka, and its open transaction is aborted by the broker when the next
        producer with the transactional id starts (or at the transaction timeout)."""
        log.warning("giving up a stuck producer: %s", self._stuck)
        self._stop.set()
        self._loop_free.set()
        if self._poller is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._poller.join)
        self._blocking.shutdown(wait=False)
        self._run_ready()
        self._producer = None  # not close(): it would wait for the stuck call
        return 0


class _DaemonThreads(Executor):
    """Runs each call on a daemon thread of its own. A ``ThreadPoolExecutor``'s threads
    are joined when the interpreter exits, so one left inside a librdkafka call that
    never returns (``ProducerStuck``) would keep the process from ever exiting; the
    calls run one at a time anyway (the loop awaits each), a thread per call costs
    little beside a transaction."""

    def __init__(self, name: str) -> None:
        self._name = name

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                future.set_exception(exc)

        threading.Thread(target=run, name=self._name, daemon=True).start()
        return future


def _ignore_result(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so no "never retrieved" noise when it ends
