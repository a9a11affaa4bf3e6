"""The command line: commands exist, exit codes are the documented ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stream import cli


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
        "routes.0.handler: unknown handler 'sentiments'; accepted: echo" in capsys.readouterr().err
    )
    path.write_text(route + 'options = { accept = "xml" }\n')
    assert cli.main(["config", "check", "-c", str(path)]) == cli.EXIT_CONFIG
    assert "routes.0.options (echo)" in capsys.readouterr().err


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
