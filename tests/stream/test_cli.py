"""The command line: commands exist, exit codes are the documented ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli import commands as cli


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`sluicegate --help` names every command."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "config", "demo", "dlq", "cost", "eval", "produce", "tail", "bench",
                    "simulate-nano"):  # fmt: skip
        assert command in out


def test_config_check_prints_masked_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config check` prints the effective settings as JSON with secrets masked."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-printed")
    assert cli.main(["config", "check"]) == cli.EXIT_OK
    captured = capsys.readouterr()
    settings = json.loads(captured.out)
    assert settings["model"]["api_key"] == "**********"
    assert "sk-never-printed" not in captured.out + captured.err
    assert "config OK" in captured.err


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad config stops with exit code 2 and a message naming the key."""
    path = tmp_path / "c.toml"
    path.write_text('[metrics]\nport = "many"\n')
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    assert "metrics.port" in capsys.readouterr().err


def test_unknown_handler_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config check` rejects an unknown handler or bad handler options, naming them."""
    path = tmp_path / "c.toml"
    route = '[[routes]]\nname = "r"\ninput_topics = ["a"]\noutput_topic = "b"\n'
    path.write_text(route + 'handler = "sentiments"\n')
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    assert (
        "route 'r': handler: unknown handler 'sentiments'; accepted: echo"
        in capsys.readouterr().err
    )
    path.write_text(route + 'options = { accept = "xml" }\n')
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    assert "route 'r' (handler echo)" in capsys.readouterr().err


def test_option_errors_name_route_option_and_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt handler option names the route by name, the option and the accepted
    options, in our words: no pydantic banner, no route index, no echoed value."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[[routes]]\nname = "first"\ninput_topics = ["a"]\noutput_topic = "b"\n'
        '[[routes]]\nname = "posts"\ninput_topics = ["p"]\noutput_topic = "q"\n'
        'handler = "moderation"\noptions = { polcy = ["spam"] }\n'
    )
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "route 'posts' (handler moderation)" in err
    assert "options.polcy: unknown option; accepted:" in err
    assert "policy" in err.split("accepted:")[1]
    for raw in ("validation error", "errors.pydantic.dev", "Extra inputs", "routes.1", "spam"):
        assert raw not in err


def test_config_check_shows_effective_options_and_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config check` shows each route's options with the handler's defaults in effect,
    and the price table in effect (defaults plus overrides), not empty maps."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[[routes]]\nname = "r"\ninput_topics = ["a"]\noutput_topic = "b"\n'
        'handler = "sentiment"\n'
        '[budget.prices."gpt-5.4-mini"]\ninput = 0.75\ncached_input = 0.075\noutput = 4.5\n'
    )
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    options = shown["routes"][0]["options"]
    assert options["local_tier"] is True
    assert options["batch"] is True
    assert "redact" in options
    assert options["local_threshold"] == 0.9  # the handler's default, not null
    assert options["alert_on"] == []  # sentiment raises no alert unless asked
    prices = shown["budget"]["prices"]
    assert prices["gpt-5.4-nano"] == {"input": 0.2, "cached_input": 0.02, "output": 1.25}
    assert prices["gpt-5.4-mini"]["output"] == 4.5


def test_misspelt_environment_variable_lists_accepted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt SLUICEGATE_* variable gets the accepted variables of its section."""
    monkeypatch.setenv("SLUICEGATE_KAFKA__BOOTSTRAP_SERVER", "x:1")
    assert cli.main(["config", "check"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "SLUICEGATE_KAFKA__BOOTSTRAP_SERVER names no setting" in err
    assert "SLUICEGATE_KAFKA__BOOTSTRAP_SERVERS" in err
    assert "SLUICEGATE_KAFKA__GROUP_ID" in err


def test_run_without_routes_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`run` with no route configured names the missing key."""
    assert cli.main(["run"]) == cli.EXIT_CONFIG
    assert "routes" in capsys.readouterr().err


def test_python_dash_m_stream() -> None:
    """`python -m stream --version` runs the same CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "stream", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("sluicegate ")


def test_config_check_reports_a_model_without_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`config check` runs the validation of `run`: a model id with no price is a config
    fault (exit 2) naming `budget.prices` and the model, not an OK that `run` refuses."""
    path = tmp_path / "c.toml"
    route = '[[routes]]\nname = "r"\ninput_topics = ["a"]\noutput_topic = "b"\n'
    path.write_text('[model]\nmodel = "gemma-270m"\n' + route + 'handler = "sentiment"\n')
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "budget.prices" in err
    assert "'gemma-270m'" in err
    path.write_text(route + 'handler = "sentiment"\noptions = { escalate_model = "gpt-9" }\n')
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    assert "routes.r.options.escalate_model" in capsys.readouterr().err
    path.write_text(
        '[model]\nmodel = "gemma-270m"\n' + route + 'handler = "sentiment"\n'
        '[budget.prices."gemma-270m"]\ninput = 0\ncached_input = 0\noutput = 0\n'
    )
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_OK


@pytest.mark.parametrize(
    ("extra", "option", "named"),
    [
        ("consumer_extra", '"fetch.max.bites" = 1', "kafka.consumer_extra"),
        ("producer_extra", '"linger.ms" = "soon"', "kafka.producer_extra"),
        ("producer_extra", '"sasl.password" = "hunter2-extra"', "kafka"),  # no SASL asked
    ],
)
def test_config_check_reports_an_option_librdkafka_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, option: str, named: str
) -> None:
    """A raw librdkafka option that is misspelt or of the wrong kind stops `config check`
    (and `run`) naming the map and librdkafka's reason, not the consumer's first poll."""
    path = tmp_path / "c.toml"
    path.write_text(
        f'[kafka]\nbootstrap_servers = "127.0.0.1:1"\n{extra} = {{ {option} }}\n'
        '[[routes]]\nname = "r"\ninput_topics = ["a"]\noutput_topic = "b"\nhandler = "echo"\n'
    )
    code = cli.main(["config", "check", "-c", str(path)])
    shown = capsys.readouterr()
    err = shown.err + shown.out
    if named == "kafka":  # librdkafka takes it: nothing to report, and nothing echoed
        assert code == cli.EXIT_OK
        assert "hunter2-extra" not in err
        return
    assert code == cli.EXIT_CONFIG
    assert f"{named}.{option.split(' = ', maxsplit=1)[0]}: librdkafka refused" in err
