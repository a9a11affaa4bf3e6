"""docker-compose.yml and the Dockerfile cannot drift from the CLI and the config.

No Docker engine runs in CI, so instead of starting the stack this reads it: every
command our image is given must parse with the real CLI, every SLUICEGATE_ variable must
name a setting, every published port of the processor must be the one it listens on,
and every config file mounted into it must pass validation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream import config
from stream.cli import commands as cli

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
OURS = {name: svc for name, svc in SERVICES.items() if svc.get("build") == "."}
# Variables the code reads besides SLUICEGATE_*: the official SDK's own.
KNOWN_OTHER_ENV = {"OPENAI_API_KEY", "OPENAI_BASE_URL"}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_runs_our_image_and_kafka() -> None:
    """The stack has the official Kafka image and at least the processor service."""
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    assert "sluicegate" in OURS


@pytest.mark.parametrize("name", sorted(OURS))
def test_commands_parse_with_the_real_cli(name: str) -> None:
    """Each command given to our image is accepted by `sluicegate`'s parser."""
    command = OURS[name]["command"]
    args = cli.build_parser().parse_args(command)
    assert args.command == command[0]


@pytest.mark.parametrize("name", sorted(OURS))
def test_environment_names_real_settings(name: str) -> None:
    """Each SLUICEGATE_ variable maps to a settings key; others are ones the code reads."""
    for var in environment(OURS[name]):
        if var.startswith(config.ENV_PREFIX):
            assert config.settings_path(var) is not None, f"{name}: {var} names no setting"
        else:
            assert var in KNOWN_OTHER_ENV, f"{name}: {var} is read by nothing"


def test_published_port_is_the_metrics_port() -> None:
    """The processor publishes the port its metrics server listens on."""
    service = OURS["sluicegate"]
    env = environment(service)
    port = int(env.get("SLUICEGATE_METRICS__PORT", config.MetricsSettings().port))
    container_ports = {int(str(p).split(":")[-1]) for p in service["ports"]}
    assert container_ports == {port}
    assert f"EXPOSE {port}" in (REPO / "Dockerfile").read_text()


def test_mounted_config_files_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Config files mounted into the processor exist and pass `config check` with the
    service's environment applied."""
    service = OURS["sluicegate"]
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        mounts[container] = REPO / host
    command = service["command"]
    config_path = mounts[command[command.index("--config") + 1]]
    for var, value in environment(service).items():
        if not value.startswith("${"):
            monkeypatch.setenv(var, value)
    settings = config.load(config_path)
    assert settings.routes, "the mounted config defines no route"


def test_dockerfile_is_slim_and_non_root() -> None:
    """The image uses a slim base, drops root, and its entrypoint is our CLI."""
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["sluicegate"]' in text
    for copied in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (REPO / copied).exists(), f"Dockerfile copies missing {copied}"
