"""The ``logs`` handler against the simulator: one model call per new template, later
lines parsed locally, header fields, named parameters, alerts and JSON shippers."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from handlers.base import HandlerContext
from handlers.logs import BurstDetector, LogsHandler, slot_names
from schemas.enriched import Alert, EnrichedEvent
from schemas.records import SourceRecord
from stream.model.service import ModelService

pytestmark = pytest.mark.asyncio

EVENTS = [
    "{t} INFO  dfs.DataNode: Receiving block blk_{n} src: /10.0.{a}.{b}:{p} dest: /10.0.0.9:50010",
    "{t} WARN  dfs.DataNode: PacketResponder {a} for block blk_{n} Interrupted.",
    "{t} ERROR payments: charge failed order=o-{n} provider=stripe code=card_declined",
    "{t} INFO  checkout: request completed method=GET path=/v1/items/{a} status=200 took={p}ms",
    "{t} FATAL inventory: lost connection to postgres host=db-{a} after {b} retries",
]  # fmt: skip


def lines(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = f"2026-11-24 09:{i // 60 % 60:02d}:{i % 60:02d},{rng.randrange(1000):03d}"
        a, b, p = rng.randrange(255), rng.randrange(255), rng.randrange(1, 65535)
        out.append(rng.choice(EVENTS).format(t=t, n=rng.randrange(10**12), a=a, b=b, p=p))
    return out


def handler(model: ModelService, **options: object) -> LogsHandler:
    built = LogsHandler.from_options(options, HandlerContext("logs", model))
    assert isinstance(built, LogsHandler)
    return built


async def enrich(
    h: LogsHandler, value: bytes, offset: int = 0
) -> tuple[EnrichedEvent, list[Alert]]:
    record = SourceRecord("logs", 0, offset, None, value)
    result = h.try_now(record) or await h.handle(record)
    assert result.value is not None
    alerts = [Alert.model_validate_json(a) for a in result.alerts]
    return EnrichedEvent.model_validate_json(result.value), alerts


async def test_one_model_call_per_template_the_rest_locally(model: ModelService) -> None:
    h = handler(model)
    stream = lines(300)
    out = [await enrich(h, line.encode(), i) for i, line in enumerate(stream)]
    assert h.model_calls <= 1.2 * len(EVENTS)
    tiers = [e.enrichment.tier for e, _ in out]
    assert tiers.count("model") == h.model_calls
    assert tiers.count("local") == len(stream) - h.model_calls
    by_event: dict[str, set[str]] = {}
    for line, (e, _) in zip(stream, out, strict=True):
        kind = next(k for k in ("Receiving", "PacketResponder", "charge", "request", "lost")
                    if k in line)  # fmt: skip
        by_event.setdefault(kind, set()).add(e.enrichment.answer["template_id"])
    # Every kind of line got one template id, and no two kinds share one.
    ids = [next(iter(v)) for v in by_event.values()]
    assert all(len(v) == 1 for v in by_event.values())
    assert len(set(ids)) == len(ids)


async def test_concurrent_lines_of_a_new_template_share_one_call(model: ModelService) -> None:
    h = handler(model)
    same = [EVENTS[2].format(t="2026-11-24 10:00:00,000", n=i, a=1, b=1, p=1) for i in range(40)]
    out = await asyncio.gather(*(enrich(h, line.encode(), i) for i, line in enumerate(same)))
    assert h.model_calls == 1
    assert len({e.enrichment.answer["template_id"] for e, _ in out}) == 1


async def test_header_fields_parameters_and_signature(model: ModelService) -> None:
    h = handler(model)
    line = EVENTS[2].format(t="2026-11-24 09:00:01,123", n=7781)
    e, alerts = await enrich(h, line.encode())
    a = e.enrichment.answer
    assert e.event == line  # the raw line, unchanged
    assert (a["level"], a["component"]) == ("error", "payments")
    assert a["timestamp"].startswith("2026-11-24T09:00:01")
    assert "<*>" in a["template"]
    assert "7781" in "".join(a["parameters"].values())
    assert a["error_signature"].startswith("E")
    assert alerts == []  # errors are not alerts by default; critical ones are
    fatal = EVENTS[4].format(t="2026-11-24 09:00:02,000", a=1, b=5)
    _, (alert,) = await enrich(h, fatal.encode(), 1)
    assert (alert.kind, alert.severity, alert.reason) == (
        "logs.level",
        "critical",
        "logs: critical",
    )


async def test_json_shipper_fields_win_over_the_header(model: ModelService) -> None:
    h = handler(model, alert_on=["error"])
    shipped = {"@timestamp": "2026-11-24T09:00:00Z", "level": "err", "service": "billing",
               "message": "charge failed order=o-1 provider=x code=y", "host": "web-1"}  # fmt: skip
    e, alerts = await enrich(h, orjson.dumps(shipped))
    a = e.enrichment.answer
    assert e.event == shipped
    assert (a["level"], a["component"], a["timestamp"]) == (
        "error",
        "billing",
        "2026-11-24T09:00:00Z",
    )
    assert [a.kind for a in alerts] == ["logs.level"]


async def test_redacted_values_become_variables(model: ModelService) -> None:
    h = handler(model)
    line = "2026-11-24 09:00:03,000 INFO  auth: password reset mailed to jane@example.com"
    e, _ = await enrich(h, line.encode())
    assert e.enrichment.redactions == {"email": 1}
    assert "example.com" not in e.enrichment.answer["template"]
    again, _ = await enrich(h, line.replace("jane", "bob").encode(), 1)
    assert again.enrichment.tier == "local"
    assert again.enrichment.answer["template_id"] == e.enrichment.answer["template_id"]


async def test_slot_names_come_from_keys_and_words() -> None:
    assert slot_names("took=<*> ms from <*> port <*> <*>") == ("took", "from", "port", "p4")


async def test_an_error_burst_is_one_alert_per_incident(model: ModelService) -> None:
    h = handler(model, burst_threshold=5, burst_window_s=60)
    bursts = []
    for i in range(12):
        line = EVENTS[2].format(t="2026-11-24 09:00:01,123", n=i)
        _, alerts = await enrich(h, line.encode(), i)
        bursts += [a for a in alerts if a.kind == "logs.error_burst"]
    (burst,) = bursts  # the 5th error fires it; the next seven belong to the same incident
    assert burst.severity == "critical"
    assert burst.details == {"component": "payments", "errors": 5, "window_s": 60.0}
    assert burst.dedup_key.startswith("logs.error_burst:logs:payments:")


async def test_burst_detector_rearms_when_the_rate_falls() -> None:
    detector = BurstDetector(threshold=4, window_s=10)
    fired = [detector.record("api", t) for t in (0, 1, 2, 3, 4, 5)]
    assert [f is not None for f in fired] == [False, False, False, True, False, False]
    assert detector.record("api", 30) is None  # the window emptied: re-armed, count 1
    fired = [detector.record("api", t) for t in (31, 32, 33)]
    assert fired[-1] is not None
