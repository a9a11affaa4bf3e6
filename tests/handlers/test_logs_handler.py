"""The ``logs`` handler against the simulator: one model call per new template, later
lines parsed locally, header fields, named parameters, alerts and JSON shippers."""

from __future__ import annotations

import asyncio
import csv
import json
import random
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from handlers.base import HandlerContext
from handlers.logs import BurstDetector, LogsHandler, slot_names
from schemas.enriched import Alert, EnrichedEvent
from schemas.records import SourceRecord
from stream.config import Settings
from stream.model.service import ModelService
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings
from tests.simutil import sim_config

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


SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


async def test_real_outputs_validate_against_the_published_schemas(
    model: ModelService, simulator: str
) -> None:
    """Every enriched event, its answer and its alerts, from model, store and local
    answers, fits schemas/json (the answer schema once forbade half of the fields)."""
    h = handler(model, alert_on=["critical", "error"], burst_threshold=3)
    values = [line.encode() for line in lines(40)]
    values.append(orjson.dumps({"message": "charge failed order=o-9 provider=x code=y",
                                "level": "error", "service": "billing"}))  # fmt: skip
    values.append(b"no header at all, mail jane@example.com")
    values.append(("2026-11-24 09:00:00,000 INFO big: " + "x1 " * 5000).encode())
    out = [await enrich(h, value, i) for i, value in enumerate(values)]
    await sim_config(simulator, refusal=1.0)  # unusable answers: Drain's template stands in
    out.append(await enrich(h, b"a brand new kind of line 42", len(values)))
    answer, enriched, alert = _validator("answer.log"), _validator("enriched"), _validator("alert")
    sources = set()
    for event, alerts in out:
        document = event.model_dump(mode="json")
        enriched.validate(document)
        answer.validate(document["enrichment"]["answer"])
        sources.add(document["enrichment"]["answer"]["template_source"])
        for a in alerts:
            alert.validate(a.model_dump(mode="json"))
    assert sources == {"model", "store", "local"}
    assert any(alerts for _, alerts in out)


async def test_a_log_teacher_makes_the_simulator_answer_true_templates(
    tmp_path: Path, simulator: str
) -> None:
    """With ``log_teacher`` the simulator answers a Loghub message with its
    EventTemplate, so the handler's templates are the true ones."""
    csv_path = tmp_path / "Tiny_2k.log_structured_corrected.csv"
    rows = [("1", "Accepted password for root from 1.2.3.4 port 22 ssh2", "E1",
             "Accepted password for <*> from <*> port <*> ssh2"),
            ("2", "Accepted password for bob from 1.2.3.5 port 23 ssh2", "E1",
             "Accepted password for <*> from <*> port <*> ssh2"),
            ("3", "Received disconnect from 1.2.3.4: 11: Bye Bye [preauth]", "E2",
             "Received disconnect from <*>: <*>: Bye Bye [preauth]")]  # fmt: skip
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["LineId", "Content", "EventId", "EventTemplate"])
        writer.writerows(rows)
    settings = SimulatorSettings(port=0, latency_median_ms=5, seed=1, log_teacher=str(tmp_path))
    async with running_simulator(settings) as url:
        service = ModelService(Settings(model={"base_url": url, "api_key": "sim"}))
        try:
            h = handler(service)
            out = [await enrich(h, f"Dec 10 06:55:46 LabSZ sshd[1]: {r[1]}".encode(), i)
                   for i, r in enumerate(rows)]  # fmt: skip
        finally:
            await service.aclose()
    answers = [e.enrichment.answer for e, _ in out]
    assert [a["template"] for a in answers] == [r[3] for r in rows]
    assert [a["template_source"] for a in answers] == ["model", "store", "model"]
    assert answers[0]["parameters"] == {"for": "root", "from": "1.2.3.4", "port": "22"}
    assert h.model_calls == 2
