"""Bad input, class by class, through the whole runtime: the generated corpus of
``tests/handlers/corpus.py`` on the routes of ``tests/handlers/test_bad_input.py``.

Each bad case is followed by a good event, on one partition per input kind, so every
input offset says which case (or good event) it was. A class's row counts its cases over
the three input kinds and where each one ended; a dead-lettered case must name its
problem in the envelope and carry its original bytes and headers unchanged.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import orjson
from confluent_kafka import Producer

from schemas.dlq import DlqEnvelope
from stream.config import Settings
from tests.faults.lab import CLIENT_LOG, Lab, Tally, read_topic, topics
from tests.faults.model_faults import HEALTHY, InProcess
from tests.handlers.corpus import TEXT_FIELD, Case, cases
from tests.handlers.test_bad_input import ROUTES
from tests.simutil import sim_config
from tests.stream.harness import source_of

# max_event_bytes of the routes: the too-large cases stay well under Kafka's 1 MB.
LIMIT = 50_000
GOOD = "good events between the bad ones"


@dataclass(frozen=True)
class Sent:
    kind: str
    case: Case | None  # None: a good event


def class_of(case: Case) -> str:
    """``not-json-7`` -> ``not-json``."""
    return case.name.rsplit("-", 1)[0]


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, Case | None, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True}, logger=CLIENT_LOG
    )
    errors: list[object] = []
    for key, case, good in records:
        value = good if case is None else case.value
        headers: list[tuple[str, str | bytes | None]] = [] if case is None else [*case.headers]
        producer.produce(topic, value=value, key=key, headers=headers,
                         on_delivery=lambda e, _m: errors.append(e))  # fmt: skip
    assert producer.flush(60) == 0
    producer.close()
    assert [e for e in errors if e is not None] == []


async def bad_input(lab: Lab, per_class: int = 20) -> list[Tally]:
    """One tally per class of bad input (``14 * per_class`` cases per input kind), and
    one for the good events around them."""
    began = time.monotonic()
    await sim_config(lab.simulator, **HEALTHY)
    sent: dict[tuple[str, int, int], Sent] = {}
    with topics(lab.bootstrap) as make:
        routes, outs = [], []
        for kind, (handler, options) in ROUTES.items():
            src, out = make(f"{kind}-in", 1), make(f"{kind}-out", 1)
            records: list[tuple[bytes, Case | None, bytes]] = []
            for i, case in enumerate(cases(kind, per_class=per_class, max_bytes=LIMIT)):
                good = orjson.dumps({TEXT_FIELD[kind]: f"All fine here, event {i}.", "id": i})
                records += [(b"k%d" % i, case, b""), (b"k%d" % i, None, good)]
            _produce(lab.bootstrap, src, records)
            sent |= {(src, 0, o): Sent(kind, case) for o, (_, case, _) in enumerate(records)}
            outs.append(out)
            routes.append({"name": kind, "input_topics": [src], "output_topic": out,
                           "handler": handler, "ordering": "unordered",
                           "options": {**options, "max_event_bytes": LIMIT}})  # fmt: skip
        dlq = make("dlq")
        settings = Settings(
            kafka=lab.kafka(), routes=routes,
            processing={"commit_interval_ms": 500, "shutdown_timeout_s": 15},
            dlq={"topic": dlq, "max_consecutive": 10_000, "max_ratio": 1.0},
            model={"base_url": lab.simulator, "api_key": "sim"},
            metrics={"enabled": False},
        )  # fmt: skip
        async with InProcess(settings) as run:
            await run.until(run.handled(len(sent)), 180, "all handled")
        outputs = Counter(source_of(r) for out in outs for r in read_topic(lab.bootstrap, out))
        dead = read_topic(lab.bootstrap, dlq)
    envelopes = {source_of(r): DlqEnvelope.from_json(r.value or b"") for r in dead}
    dead_count = Counter(source_of(r) for r in dead)
    rows: dict[str, Tally] = defaultdict(lambda: Tally(""))
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    for source, what in sent.items():
        name = GOOD if what.case is None else class_of(what.case)
        row = rows[name]
        row.name = name
        row.events_in += 1
        row.out += source in outputs
        row.dead += source in envelopes
        row.lost += source not in outputs and source not in envelopes
        row.duplicated += max(0, outputs[source] + dead_count[source] - 1)
        envelope = envelopes.get(source)
        if what.case is not None and envelope is not None:
            case = what.case
            intact = envelope.value == case.value and tuple(envelope.headers) == case.headers
            named = case.expect in envelope.error_message
            reasons[name][f"{envelope.error_class} at {envelope.stage}"] += 1
            row.facts["bytes_and_headers_intact"] = (
                row.facts.get("bytes_and_headers_intact", 0) + intact
            )
            row.facts["reason_names_the_problem"] = (
                row.facts.get("reason_names_the_problem", 0) + named
            )
            row.facts["expect"] = case.expect
    seconds = time.monotonic() - began
    for name, row in rows.items():
        row.seconds = seconds
        if name == GOOD:
            row.notes = "every one enriched, none dead-lettered"
            continue
        row.cases = row.events_in
        how = ", ".join(f"{k} ({n})" for k, n in reasons[name].most_common())
        row.facts["dead_lettered_as"] = dict(reasons[name])
        row.notes = (
            f"dead-lettered as {how or 'nothing'}; reason names the problem "
            f"({row.facts.get('expect', '')!r}) in {row.facts.get('reason_names_the_problem', 0)}"
            f"/{row.events_in}; bytes and headers intact in "
            f"{row.facts.get('bytes_and_headers_intact', 0)}/{row.events_in}"
        )
    return [row for name, row in rows.items() if name != GOOD] + [rows[GOOD]]
