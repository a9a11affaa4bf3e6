"""`sluicegate run` against a real OpenAI-compatible server: llama-cpp-python's server
with Gemma 3 270M on 127.0.0.1 (``make compat``; not part of ``make test``).

100 reviews and 100 log lines go through the real CLI in a subprocess, configured with
nothing but the server's ``base_url``, its model id and a price. An independent
consumer then reads the output and DLQ topics: every input ends enriched (valid against
schemas/json) or dead-lettered with a reason, nothing is lost, and the model itself
answered at least half of them. The model is tiny and its answers are often malformed,
slow or truncated: the point is that a real server's answers are handled, not their
quality. The figures are printed (``-s``) for README.md and RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; a dev dependency
import orjson
import pytest

from schemas import export
from schemas.dlq import DlqEnvelope
from stream.config import KafkaSettings
from tests.compat import llama_server
from tests.conftest import TopicFactory
from tests.kafkautil import Record, consume, produce

pytestmark = [pytest.mark.compat, pytest.mark.kafka, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
EVENTS_PER_KIND = 100
RUN_BUDGET_S = 480.0  # the whole target is kept within 10 minutes on 2 cores

PRODUCTS = ["kettle", "headphones", "desk lamp", "backpack", "blender", "phone case",
            "office chair", "router", "water bottle", "keyboard"]  # fmt: skip
OPINIONS = [
    "The {p} works, but the manual was confusing and setup took an hour.",
    "Delivery of the {p} was late again; support answered quickly though.",
    "Not sure about the {p} yet, the colour differs from the photos.",
    "My {p} stopped working after two weeks. How do I get a replacement?",
    "The {p} is okay for the price, nothing more.",
    "I returned the {p}; it was smaller than described.",
    "Second {p} I bought here, the first one is still going after a year.",
    "The {p} arrived with a scratch, otherwise as expected.",
    "Can I use the {p} abroad? The listing does not say.",
    "The {p} makes a strange noise when it starts, is that normal?",
]
LOG_LINES = [
    "INFO  checkout-api request completed method=GET path=/v1/cart/{n} status=200 ms={m}",
    "WARN  payments retrying charge attempt={a} provider=stripe order=o-{n}",
    "ERROR inventory stock sync failed for warehouse wh-{a}: connection reset by peer",
    "INFO  auth user u-{n} logged in from 10.0.{a}.{m}",
    "ERROR checkout-api upstream timeout after {m} ms calling pricing-svc",
    "INFO  scheduler job nightly-report-{a} finished in {m} s",
    "WARN  cache eviction rate high: {m} keys/s on node cache-{a}",
    "DEBUG search query took {m} ms hits={n}",
    "ERROR payments card declined for order o-{n} code=do_not_honor",
    "INFO  mailer sent {a} messages to queue notifications",
]


def reviews() -> list[tuple[bytes | None, bytes]]:
    rng = random.Random(17)
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(EVENTS_PER_KIND):
        # the order number keeps every text distinct: the response cache answers none
        text = rng.choice(OPINIONS).format(p=rng.choice(PRODUCTS)) + f" Order {4100 + i}."
        review = {"review_id": f"r-{i:04d}", "rating": rng.randint(1, 5), "text": text}
        out.append((f"p-{i % 7}".encode(), orjson.dumps(review)))
    return out


def log_lines() -> list[tuple[bytes | None, bytes]]:
    rng = random.Random(23)
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(EVENTS_PER_KIND):
        body = rng.choice(LOG_LINES).format(
            n=rng.randint(1000, 99999), m=rng.randint(1, 999), a=rng.randint(1, 9)
        )
        line = f"2026-11-24T09:{i // 60:02d}:{i % 60:02d}.000Z {body} trace=l-{i:04d}"
        out.append((None, line.encode()))
    return out


def write_config(path: Path, kafka: KafkaSettings, server: llama_server.Server,
                 topics: dict[str, str]) -> None:  # fmt: skip
    """The configuration a user would write: the server's address, model id and price."""
    path.write_text(f"""
[kafka]
bootstrap_servers = "{kafka.bootstrap_servers}"
group_id = "{kafka.group_id}"

[dlq]
topic = "{topics["dlq"]}"

[alerts]
topic = "{topics["alerts"]}"

[model]
base_url = "{server.base_url}"
model = "{server.model}"

[budget.prices."{server.model}"]
input = 0.0
cached_input = 0.0
output = 0.0

[metrics]
enabled = false

[log]
format = "console"

[[routes]]
name = "reviews"
input_topics = ["{topics["reviews"]}"]
output_topic = "{topics["reviews_out"]}"
handler = "sentiment"
ordering = "key"
options = {{ local_tier = false }}

[[routes]]
name = "logs"
input_topics = ["{topics["logs"]}"]
output_topic = "{topics["logs_out"]}"
handler = "logs"
ordering = "partition"
options = {{ local_tier = false }}
""")


def input_id(value: bytes | None) -> str | None:
    """The id an input carries: a review's ``review_id``, a log line's ``trace=``."""
    if value is None:
        return None
    text = value.decode(errors="replace")
    if text.startswith("{"):
        rid: str | None = json.loads(text).get("review_id")
        return rid
    return text.rsplit("trace=", 1)[-1] if "trace=" in text else None


def enriched_id(record: Record) -> str | None:
    assert record.value is not None
    event = orjson.loads(record.value)["event"]
    if isinstance(event, dict):
        if "review_id" in event:
            return str(event["review_id"])
        event = event.get("message") or event.get("line") or event.get("text") or ""
    return input_id(str(event).encode())


def validator(name: str) -> Any:
    schema = json.loads((export.FOLDER / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def test_sluicegate_run_through_llama_cpp_with_gemma(  # noqa: PLR0915 - one scenario
    kafka: KafkaSettings, make_topic: TopicFactory, tmp_path: Path
) -> None:
    started = time.monotonic()
    topics = {name: make_topic(name) for name in
              ("reviews", "logs", "reviews_out", "logs_out", "dlq", "alerts")}  # fmt: skip
    inputs = {"reviews": reviews(), "logs": log_lines()}
    for kind, records in inputs.items():
        produce(kafka.bootstrap_servers, topics[kind], records)
    expected = {input_id(v) for recs in inputs.values() for _, v in recs}
    assert len(expected) == 2 * EVENTS_PER_KIND

    with llama_server.running(tmp_path / "llama-server.log") as server:
        config = tmp_path / "sluicegate.toml"
        write_config(config, kafka, server, topics)
        check = subprocess.run(
            [sys.executable, "-m", "stream", "config", "check", "-c", str(config)],
            cwd=REPO, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLUICEGATE_", "OPENAI_"))}  # fmt: skip
        log = tmp_path / "sluicegate.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stream", "run", "-c", str(config)],
                cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            seen = wait_for_all(kafka.bootstrap_servers, topics, expected, proc, started)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    run_s = time.monotonic() - started
    tail = log.read_text(errors="replace")[-3000:]

    boot = kafka.bootstrap_servers
    outputs = [r for t in ("reviews_out", "logs_out")
               for r in consume(boot, topics[t], None, timeout=20, idle_s=2)]  # fmt: skip
    dead = [DlqEnvelope.model_validate_json(r.value or b"")
            for r in consume(boot, topics["dlq"], None, timeout=20, idle_s=2)]  # fmt: skip
    enriched_schema = validator("enriched")
    answer_schema = {
        "reviews_out": validator("answer.sentiment"),
        "logs_out": validator("answer.log"),
    }
    tiers: Counter[str] = Counter()
    enriched: dict[str, str] = {}
    for record in outputs:
        body = orjson.loads(record.value or b"")
        enriched_schema.validate(body)
        kind = "reviews_out" if record.topic == topics["reviews_out"] else "logs_out"
        answer_schema[kind].validate(body["enrichment"]["answer"])
        rid = enriched_id(record)
        assert rid is not None, f"an output carries no id: {body['event']!r}"
        assert rid in expected, f"an output matches no input: {body['event']!r}"
        if rid not in enriched:
            enriched[rid] = body["enrichment"]["tier"]
            tiers[body["enrichment"]["tier"]] += 1
    reasons: Counter[str] = Counter()
    dead_ids: set[str | None] = set()
    for envelope in dead:
        rid = input_id(envelope.value)
        assert rid in expected, f"a DLQ envelope matches no input: {envelope.value!r}"
        assert envelope.error_message, envelope
        dead_ids.add(rid)
        reasons[f"{envelope.error_class}: {envelope.error_message[:90]}"] += 1

    answered: set[str | None] = {*enriched, *dead_ids}
    model_share = tiers["model"] / len(expected)
    print(f"\ncompat figures: {len(expected)} events in {run_s:.0f} s; tiers {dict(tiers)}; "
          f"answered by the model {model_share:.0%}; dead-lettered {len(dead_ids)}")  # fmt: skip
    for reason, count in reasons.most_common():
        print(f"  DLQ {count:3d} x {reason}")
    assert seen == expected, tail
    assert answered == expected, f"lost: {sorted(map(str, expected - answered))[:10]}\n{tail}"
    assert model_share >= 0.5, f"the model answered only {model_share:.0%}: {dict(tiers)}\n{tail}"


def wait_for_all(bootstrap: str, topics: dict[str, str], expected: set[str | None],
                 proc: subprocess.Popen[bytes], started: float) -> set[str | None]:  # fmt: skip
    """Poll the output and DLQ topics until every input id is accounted for."""
    seen: set[str | None] = set()
    while time.monotonic() - started < RUN_BUDGET_S:
        if proc.poll() is not None:
            break
        seen = set()
        for name in ("reviews_out", "logs_out"):
            seen |= {
                enriched_id(r) for r in consume(bootstrap, topics[name], None, timeout=8, idle_s=1)
            }
        seen |= {input_id(DlqEnvelope.model_validate_json(r.value or b"").value)
                 for r in consume(bootstrap, topics["dlq"], None, timeout=8, idle_s=1)}  # fmt: skip
        if expected <= seen:
            break
        time.sleep(5)
    return seen
