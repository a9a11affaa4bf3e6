"""Secrets never reach the output: the API key and the SASL password are absent from
everything a running processor writes (logs at DEBUG, both formats; the enriched
events, DLQ records and alerts it produces), from ``config check`` and from
``/metrics``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stream.config import KafkaSettings
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-proj-NEVERPRINTME0123456789abcdefABCDEF"
SASL_PASSWORD = "sasl-pass-NEVERPRINTME-42"  # noqa: S105 - a marker to search for


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream", *args]


@pytest.fixture
def simulator_process() -> Iterator[str]:
    """The simulator in a process of its own (the test blocks while the processor runs)."""
    port = free_port()
    command = python("simulate-nano", "--port", str(port), "--latency-median-ms", "5")
    sim = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/sim/stats", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"{url}/v1"
    finally:
        sim.terminate()
        sim.wait(10)


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_no_secret_in_any_output(
    kafka: KafkaSettings, make_topic: TopicFactory, simulator_process: str, tmp_path: Path,
    log_format: str,
) -> None:  # fmt: skip
    src, out, dlq, alerts = (make_topic(p) for p in ("in", "out", "dlq", "alerts"))
    bad = [b"not json %d" % i for i in range(4)]  # dead letters near the cap: an alert too
    events = [orjson.dumps({"text": f"It is a chair number {i}."}) for i in range(5)]
    produce(kafka.bootstrap_servers, src, [(None, e) for e in bad + events])
    port = free_port()
    config = tmp_path / "c.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka.bootstrap_servers}"\ngroup_id = "{kafka.group_id}"\n'
        f'sasl_username = "svc"\nsasl_password = "{SASL_PASSWORD}"\n'
        f'[model]\nbase_url = "{simulator_process}"\n'
        f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[dlq]\ntopic = "{dlq}"\nmax_consecutive = 5\n[alerts]\ntopic = "{alerts}"\n'
        f'[log]\nlevel = "DEBUG"\nformat = "{log_format}"\n'
        f'[[routes]]\nname = "r"\ninput_topics = ["{src}"]\noutput_topic = "{out}"\n'
        'handler = "sentiment"\noptions = { local_tier = false }\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    env["OPENAI_API_KEY"] = API_KEY
    check = subprocess.run(python("config", "check", "-c", str(config)),
                           cwd=REPO, env=env, capture_output=True, check=True)  # fmt: skip
    run = subprocess.Popen(python("run", "-c", str(config)), cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    metrics = b""
    try:
        produced = consume(kafka.bootstrap_servers, out, 5, timeout=60)
        dead = consume(kafka.bootstrap_servers, dlq, 4, timeout=30)
        raised = consume(kafka.bootstrap_servers, alerts, 1, timeout=30)
        assert (len(produced), len(dead), len(raised)) == (5, 4, 1)
        deadline = time.monotonic() + 10
        while not metrics and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    metrics = r.read()
            except OSError:
                time.sleep(0.2)
    finally:
        run.send_signal(signal.SIGTERM)
        logs, _ = run.communicate(timeout=60)
    assert b"sluicegate_events_total" in metrics
    assert b"DEBUG" in logs or b'"debug"' in logs  # the run did log at DEBUG
    for secret in (API_KEY, SASL_PASSWORD):
        records = b"".join(
            (r.value or b"") + b"".join(v for _, v in r.headers) for r in produced + dead + raised
        )
        for name, text in (("config check", check.stdout + check.stderr), ("logs", logs),
                           ("metrics", metrics), ("records", records)):  # fmt: skip
            assert secret.encode() not in text, f"{name} shows a secret"
            assert secret[-12:].encode() not in text, f"{name} shows part of a secret"
