"""Settings: precedence, validation messages that name the key, secrets kept masked."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream import config
from stream.errors import ConfigError

ROUTE = """
[[routes]]
name = "reviews"
input_topics = ["reviews"]
output_topic = "reviews.enriched"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluicegate.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    """With no file and no environment the settings are the documented defaults."""
    settings = config.load()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.model.model == "gpt-5.4-nano"
    assert settings.processing.guarantee == "at-least-once"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable beats the file, which beats the default."""
    path = write(tmp_path, '[kafka]\nbootstrap_servers = "file:9092"\ngroup_id = "g-file"\n')
    monkeypatch.setenv("SLUICEGATE_KAFKA__BOOTSTRAP_SERVERS", "env:9092")
    settings = config.load(path)
    assert settings.kafka.bootstrap_servers == "env:9092"
    assert settings.kafka.group_id == "g-file"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SLUICEGATE_CONFIG names the file when no path is given."""
    monkeypatch.setenv("SLUICEGATE_CONFIG", str(write(tmp_path, ROUTE)))
    assert [r.name for r in config.load().routes] == ["reviews"]


def test_bad_values_are_named_with_accepted_values(tmp_path: Path) -> None:
    """Each bad key is reported with its value, what is accepted and its env variable."""
    path = write(tmp_path, '[processing]\nguarantee = "exactly_once"\nmax_in_flight = 0\n')
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert "processing.guarantee" in message
    assert "'at-least-once' or 'exactly-once'" in message
    assert "'exactly_once'" in message
    assert "SLUICEGATE_PROCESSING__GUARANTEE" in message
    assert "processing.max_in_flight" in message


def test_unknown_key_lists_accepted_keys(tmp_path: Path) -> None:
    """A typo in the file names the key and lists the keys accepted in that section."""
    with pytest.raises(
        ConfigError, match=r"kafka\.bootstrap_server: unknown key.*bootstrap_servers"
    ):
        config.load(write(tmp_path, '[kafka]\nbootstrap_server = "x:1"\n'))


def test_unknown_environment_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt nested variable stops the start instead of being silently ignored."""
    monkeypatch.setenv("SLUICEGATE_KAFKA__BOOTSTRAP_SERVER", "x:1")
    with pytest.raises(ConfigError, match="SLUICEGATE_KAFKA__BOOTSTRAP_SERVER names no setting"):
        config.load()


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A syntax error reports the file and the parser's position."""
    path = write(tmp_path, "[kafka\n")
    with pytest.raises(ConfigError, match=r"sluicegate\.toml is not valid TOML"):
        config.load(path)


def test_missing_file() -> None:
    """A config path that does not exist is named."""
    with pytest.raises(ConfigError, match="does not exist"):
        config.load("/nonexistent/sluicegate.toml")


def test_secrets_masked_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Passwords and API keys never appear in as_dict() or in error messages."""
    monkeypatch.setenv("SLUICEGATE_KAFKA__SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-should-not-leak")
    path = write(tmp_path, '[kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\n')
    settings = config.load(path)
    dumped = repr(settings.as_dict()) + repr(settings)
    assert "hunter2-secret" not in dumped
    assert "sk-test-should-not-leak" not in dumped
    assert settings.kafka.client_config()["sasl.password"] == "hunter2-secret"
    assert settings.model.api_key is not None
    assert settings.model.api_key.get_secret_value() == "sk-test-should-not-leak"

    monkeypatch.setenv("SLUICEGATE_KAFKA__SSL_KEY_PASSWORD", "x" * 3)
    monkeypatch.setenv("SLUICEGATE_KAFKA__SASL_MECHANISM", "NOPE")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert "hunter2-secret" not in str(caught.value)


def test_sasl_needs_a_mechanism(tmp_path: Path) -> None:
    """SASL without a mechanism is refused with the accepted mechanisms listed."""
    with pytest.raises(ConfigError, match=r"sasl_mechanism.*SCRAM-SHA-512"):
        config.load(write(tmp_path, '[kafka]\nsecurity_protocol = "SASL_SSL"\n'))


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (ROUTE, "used twice"),
        (ROUTE.replace('"reviews.enriched"', '"other"').replace('"reviews"\ni', '"r2"\ni'),
         "each input topic feeds one route"),
        (ROUTE.replace('"reviews.enriched"', '"sluicegate.dlq"').replace('"reviews"\ni', '"r2"\ni')
         .replace('["reviews"]', '["x"]'), "loop events back"),
        (ROUTE.replace('["reviews"]', '["bad topic"]').replace('"reviews"\ni', '"r2"\ni'),
         "not a Kafka topic name"),
    ],
)  # fmt: skip
def test_route_conflicts(tmp_path: Path, extra: str, fragment: str) -> None:
    """Routes that would collide or loop are rejected with a reason."""
    with pytest.raises(ConfigError, match=fragment):
        config.load(write(tmp_path, ROUTE + extra))


def test_settings_are_frozen() -> None:
    """Nothing can change the settings after start-up."""
    settings = config.load()
    with pytest.raises(ValueError, match="frozen"):
        settings.kafka.group_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("SLUICEGATE_KAFKA__GROUP_ID", ("kafka", "group_id")),
        ("SLUICEGATE_ROUTES", ("routes",)),
        ("SLUICEGATE_KAFKA__CONSUMER_EXTRA", ("kafka", "consumer_extra")),
        ("SLUICEGATE_KAFKA__NOPE", None),
        ("SLUICEGATE_NOPE__X", None),
        ("OTHER_THING", None),
    ],
)
def test_settings_path(name: str, path: tuple[str, ...] | None) -> None:
    """Environment variable names map to settings keys, unknown ones to None."""
    assert config.settings_path(name) == path


def test_partition_bound_must_exceed_poll_batch(tmp_path: Path) -> None:
    """A per-partition bound below two poll batches would pause after every poll."""
    path = write(tmp_path, "[processing]\nmax_in_flight_per_partition = 600\n")
    with pytest.raises(ConfigError, match=r"at least twice max_poll_records \(500\)"):
        config.load(path)


@pytest.mark.parametrize("name", ["SLUICEGATE_LOG_LEVEL", "SLUICEGATE_CONFG"])
def test_single_underscore_near_misses_are_reported(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A setting written with one underscore, or a misspelt SLUICEGATE_CONFIG, stops the start."""
    monkeypatch.setenv(name, "DEBUG")
    with pytest.raises(ConfigError, match=f"{name} names no setting.*accepted"):
        config.load()


def test_tool_variables_are_not_settings_typos(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker launcher's SLUICEGATE_KAFKA_HEAP is not taken for a misspelt setting."""
    monkeypatch.setenv("SLUICEGATE_KAFKA_HEAP", "-Xmx1g")
    assert config.load().kafka.group_id == "sluicegate"
