"""Dead letters: what a failed event becomes, the DLQ cap that counts them, and the alert
raised when they come near it. One owner for all three, shared by both paths and both
commit strategies."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from schemas.enriched import Alert
from schemas.records import OutRecord, SourceRecord
from stream.config import Settings
from stream.dlq import DEFAULT_MAX_RECORD_BYTES, DlqCap, dead_letter
from stream.errors import SluicegateError
from stream.kafka.headers import with_offset
from stream.runtime.partition import Partition, Route
from stream.telemetry.logs import event_fields

log = logging.getLogger("stream.runtime")

# While dead letters stay near the DLQ cap, the alert about it is raised again at most
# this often (its dedup key makes the repeats one incident).
CAP_ALERT_EVERY_S = 300.0


class DeadLetters:
    def __init__(self, settings: Settings, fail: Callable[[BaseException], None]) -> None:
        self.settings = settings
        self.cap = DlqCap(settings.dlq)
        self._fail = fail
        # The largest record the producer sends: bigger DLQ envelopes go raw or truncated.
        extra = settings.kafka.producer_extra.get("message.max.bytes", DEFAULT_MAX_RECORD_BYTES)
        self._max_bytes = int(extra)
        self._alerted_at = -CAP_ALERT_EVERY_S
        self.alerts_raised: Counter[tuple[str, str]] = Counter()

    def record(
        self,
        route: Route,
        record: SourceRecord,
        error: BaseException,
        attempts: int,
        stage: str | None = None,
    ) -> OutRecord:
        """The DLQ record of ``record`` failing with ``error`` (logged, not yet counted)."""
        log.warning(
            "dead-lettering %s: %s: %s", record.where, type(error).__name__, error,
            extra=event_fields(route.name, record.topic, record.partition, record.offset),
        )  # fmt: skip
        return dead_letter(
            record, error, topic=self.settings.dlq.topic, route=route.name,
            handler=route.settings.handler, stage=stage, attempts=attempts,
            max_bytes=self._max_bytes,
        )  # fmt: skip

    def counted(self, dead: bool) -> bool:
        """Count one finished event towards the DLQ cap; False if the cap stopped us."""
        try:
            self.cap.record(dead)
        except SluicegateError as exc:  # the DLQ cap: stop, leave the event uncommitted
            self._fail(exc)
            return False
        return True

    def passed(self, events: int) -> bool:
        """Count ``events`` good events in a row; False if the cap stopped us."""
        try:
            self.cap.passed(events)
        except SluicegateError as exc:
            self._fail(exc)
            return False
        return True

    def cap_alert(self, part: Partition, record: SourceRecord) -> list[OutRecord]:
        """The ``dlq.cap_approaching`` alert when near the cap, at most every
        ``CAP_ALERT_EVERY_S``."""
        now = time.monotonic()
        if not self.cap.near_limit or now - self._alerted_at < CAP_ALERT_EVERY_S:
            return []
        self._alerted_at = now
        cap, limits = self.cap, self.settings.dlq
        self.alerts_raised[(part.route.name, "dlq.cap_approaching")] += 1
        alert = Alert(
            kind="dlq.cap_approaching",
            severity="warning",
            dedup_key=f"dlq-cap:{self.settings.kafka.group_id}:{limits.topic}",
            reason=f"dead letters near the DLQ cap: {cap.ratio:.0%} of the last "
            f"{limits.window} events (dlq.max_ratio {limits.max_ratio:g}), {cap.consecutive} "
            f"in a row (dlq.max_consecutive {limits.max_consecutive}); at the cap the "
            "processor stops",
            route=part.route.name,
            source=record.where,
            at=datetime.now(UTC),
            details={
                "window_ratio": cap.ratio, "max_ratio": limits.max_ratio,
                "consecutive": cap.consecutive, "max_consecutive": limits.max_consecutive,
                "window": limits.window, "dlq_topic": limits.topic,
            },
        )  # fmt: skip
        headers = record.headers + with_offset(part.trace, record)
        value = alert.model_dump_json().encode()
        return [OutRecord(self.settings.alerts.topic, record.key, value, headers)]
