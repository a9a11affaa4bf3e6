"""Secrets never reach the output: the API key and the SASL password are absent from
everything a running processor writes (logs at DEBUG, both formats; the enriched
events, DLQ records and alerts it produces), from ``config check`` and from
``/metrics``; and each way a secret can hide (a librdkafka option, URL userinfo, an
Authorization header, a provider message quoting the key, a misspelt key) is masked by
``stream.secrets`` wherever the process writes text."""

from __future__ import annotations

import io
import json
import logging
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

from stream import config, secrets
from stream.cli import commands as cli
from stream.config import KafkaSettings, LogSettings
from stream.dlq import dead_letter
from stream.errors import ConfigError, SluicegateError
from stream.records import SourceRecord
from stream.telemetry import logs
from tests.conftest import TopicFactory
from tests.kafkautil import consume, produce

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


@pytest.mark.kafka
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
            (r.value or b"") + b"".join(v or b"" for _, v in r.headers)
            for r in produced + dead + raised
        )
        for name, text in (("config check", check.stdout + check.stderr), ("logs", logs),
                           ("metrics", metrics), ("records", records)):  # fmt: skip
            assert secret.encode() not in text, f"{name} shows a secret"
            assert secret[-12:].encode() not in text, f"{name} shows part of a secret"


# -- unit: each place a secret can hide ----------------------------------------------

EXTRA_PW = "extra-PASS-7731-zz"
KEY_PW = "keypass-5512-qq"
URL_PW = "urlpass-9981-xx"
TYPO_PW = "kafka-SECRET-pw-777"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("SLUICEGATE_", "OPENAI_")):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_config_check_masks_librdkafka_options_and_url_userinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config check` masks *.password, sasl.*, ssl.key.* in the raw librdkafka maps and
    the password in model.base_url, and keeps what is no secret readable."""
    path = _write(tmp_path, (
        "[kafka]\n"
        f'consumer_extra = {{ "sasl.password" = "{EXTRA_PW}", "fetch.min.bytes" = 1 }}\n'
        f'producer_extra = {{ "ssl.key.password" = "{KEY_PW}", "sasl.oauthbearer.client.secret"'
        f' = "{EXTRA_PW}x", "ssl.key.location" = "/etc/key.pem", "acks" = "all" }}\n'
        f'[model]\nbase_url = "https://svc:{URL_PW}@llm.example/v1"\n'
    ))  # fmt: skip
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr()
    for secret in (EXTRA_PW, KEY_PW, URL_PW):
        assert secret not in out.out + out.err
    shown = json.loads(out.out)
    assert shown["kafka"]["consumer_extra"] == {"sasl.password": "**********", "fetch.min.bytes": 1}
    assert shown["kafka"]["producer_extra"]["acks"] == "all"
    assert shown["kafka"]["producer_extra"]["ssl.key.location"] == "/etc/key.pem"
    assert shown["model"]["base_url"] == "https://**********@llm.example/v1"
    # Token counts are sizes, shown as they are.
    assert shown["model"]["max_completion_tokens"] == config.ModelSettings().max_completion_tokens
    assert shown["model"]["batch_max_tokens"] == config.ModelSettings().batch_max_tokens


def test_secret_keys_by_name() -> None:
    """A token or a password is secret; a count of tokens is not."""
    for key in ("sasl.password", "access_token", "OPENAI_API_KEY", "oauth.token.value",
                "ssl.key.password", "client_secret"):  # fmt: skip
        assert secrets.is_secret_key(key), key
    for key in ("max_completion_tokens", "batch_max_tokens", "sasl.mechanism",
                "ssl.key.location", "prompt_tokens"):  # fmt: skip
        assert not secrets.is_secret_key(key), key


@pytest.mark.usefixtures("clean_env")
def test_misspelt_key_never_echoes_its_value(tmp_path: Path) -> None:
    """An unknown key is named with the accepted keys, its value never shown."""
    path = _write(tmp_path, f'[kafka]\nsasl_pasword = "{TYPO_PW}"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert "kafka.sasl_pasword: unknown key" in message
    assert "sasl_password" in message  # the accepted keys
    assert TYPO_PW not in message
    assert TYPO_PW[-6:] not in message


@pytest.mark.usefixtures("clean_env")
def test_bad_value_of_a_secret_option_is_masked(tmp_path: Path) -> None:
    """A secret-bearing librdkafka option with a wrong type is reported, masked."""
    path = _write(tmp_path, f'[kafka]\nconsumer_extra = {{ "sasl.password" = ["{EXTRA_PW}"] }}\n')
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert "consumer_extra" in str(caught.value)
    assert EXTRA_PW not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Error code: 401 - Incorrect API key provided: sk-test-abcdEFGH12345678. "
         "You can find your API key at https://platform.openai.com", "abcdEFGH12345678"),
        ("HTTP Request: POST https://user:hunter2pw@api.example/v1/chat", "hunter2pw"),
        ("headers={'Authorization': 'Bearer tok-AAAA-BBBB-CCCC'}", "tok-AAAA-BBBB-CCCC"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("conf {'sasl.password': 'pw-in-dict-42', 'acks': 'all'}", "pw-in-dict-42"),
        ("sasl.password=unquoted-pw-99 next", "unquoted-pw-99"),
        ('"ssl.key.password": "json-pw-77"', "json-pw-77"),
        ("https://host/v1?api_key=query-key-55&x=1", "query-key-55"),
    ],
)  # fmt: skip
def test_mask_text_finds_secrets_by_position(text: str, secret: str) -> None:
    """Secrets in provider messages, URLs, headers and option dumps are masked."""
    masked = secrets.mask_text(text)
    assert secret not in masked
    assert secrets.MASK in masked


def test_an_error_code_naming_a_key_is_not_masked_as_one() -> None:
    """The provider's reason after its error code stays readable; the key itself not."""
    masked = secrets.mask_text(
        "HTTP 401 invalid_api_key: Incorrect API key provided: sk-test-abcdEFGH12345678."
    )
    assert "invalid_api_key: Incorrect API key provided: sk-" in masked
    assert "abcdEFGH12345678" not in masked


def test_mask_text_keeps_ordinary_text() -> None:
    """Token counts, mechanisms and paths are not secrets and stay readable."""
    for text in ("max_tokens=5 prompt_tokens: 33", "sasl.mechanism=PLAIN",
                 "ssl.key.location=/etc/k.pem", "http://127.0.0.1:8088/v1"):  # fmt: skip
        assert secrets.mask_text(text) == text


def test_registered_values_are_masked_anywhere() -> None:
    """A secret the configuration holds is masked even where no pattern would see it."""
    secrets.register("reg-SECRET-value-31337")
    assert secrets.mask_text("weird place: reg-SECRET-value-31337!") == (
        f"weird place: {secrets.MASK}!"
    )


@pytest.mark.usefixtures("clean_env")
def test_load_registers_the_configured_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After load, the SASL password, API key and URL password are masked in any text."""
    monkeypatch.setenv("OPENAI_API_KEY", "plainkey-without-prefix-1234")
    path = _write(tmp_path, f'[kafka]\nsasl_password = "loaded-pw-4242"\n'
                            f'[model]\nbase_url = "http://u:{URL_PW}@h/v1"\n')  # fmt: skip
    config.load(path)
    text = secrets.mask_text("a plainkey-without-prefix-1234 b loaded-pw-4242 c " + URL_PW)
    assert "plainkey" not in text
    assert "loaded-pw" not in text
    assert URL_PW not in text


def _refused() -> None:
    raise SluicegateError("Incorrect API key provided: sk-live-YYYY88888888")


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_log_lines_are_masked(fmt: str) -> None:
    """Every line our handler writes is masked: the HTTP client's DEBUG URL, an ERROR
    quoting a provider's 401, and an exception's traceback text."""
    out = io.StringIO()
    handler = logs.make_handler(LogSettings(format=fmt, level="DEBUG"), out)
    logger = logging.getLogger("httpx")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("HTTP Request: %s %s", "POST", "https://svc:hunter3pw@api.example/v1")
        logger.error("model call failed: %s", "Incorrect API key provided: sk-test-ZZZZ99999999")
        try:
            _refused()
        except SluicegateError:
            logger.exception("stopped")
        logger.info("extra field", extra={"url": "http://a:extra-pw-1@h"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    text = out.getvalue()
    for secret in ("hunter3pw", "ZZZZ99999999", "YYYY88888888", "extra-pw-1"):
        assert secret not in text
    assert "Incorrect API key provided" in text  # the reason itself stays


def test_exit_message_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """The line `sluicegate` prints when it stops never quotes the key."""
    cli.fail(SluicegateError("Error code: 401 - Incorrect API key provided: sk-test-XXXX7777777"))
    err = capsys.readouterr().err
    assert "XXXX7777777" not in err
    assert "Incorrect API key provided" in err


def test_dlq_record_masks_secret_in_error_message() -> None:
    """A dead letter whose error quotes a key keeps the reason, not the key."""
    record = SourceRecord("t", 0, 5, None, b"{}", (), 0)
    out = dead_letter(record, SluicegateError("Incorrect API key provided: sk-test-WWWW6666666"),
                      topic="dlq", route="r", handler="h")  # fmt: skip
    everything = (out.value or b"") + b"".join(v or b"" for _, v in out.headers)
    assert b"WWWW6666666" not in everything
    assert b"Incorrect API key provided" in everything


def test_alerts_mask_what_they_say() -> None:
    """An alert's reason quoting a provider's message, and a detail holding a password,
    reach the alerts topic masked; the event it carries is left as the producer sent it."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from schemas.enriched import Alert  # noqa: PLC0415

    alert = Alert(
        kind="logs.level", severity="warning", dedup_key="k",
        reason="model failed: Incorrect API key provided: sk-test-VVVV5555555",
        at=datetime.now(UTC),
        details={"template": "login with password=hunter2-ZZ9 failed", "api_key": "raw-key-1"},
    )  # fmt: skip
    text = alert.model_dump_json()
    for secret in ("VVVV5555555", "hunter2-ZZ9", "raw-key-1"):
        assert secret not in text
    assert "Incorrect API key provided" in text
    assert "login with password=" in text


def test_metric_label_values_are_masked() -> None:
    """A label value holding a registered secret is masked on the scrape."""
    from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

    from stream.telemetry.metrics import masked  # noqa: PLC0415

    secrets.register("label-SECRET-4242")
    family = CounterMetricFamily("x", "doc", labels=["route", "stage"])
    family.add_metric(["r-label-SECRET-4242", "model"], 1)
    (sample,) = masked(family).samples
    assert sample.labels == {"route": f"r-{secrets.MASK}", "stage": "model"}
