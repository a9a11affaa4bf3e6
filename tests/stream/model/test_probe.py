"""The start-up probe: a wrong address or a refused key stops ``run`` with exit 3."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from stream.config import ModelSettings
from stream.model import probe as probe_module
from stream.model.client import ModelClient
from stream.model.errors import ModelUnreachable
from tests.stream.model.fakes import completion, error

KEY = "sk-very-secret-0123456789"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def models_page() -> httpx2.Response:
    return httpx2.Response(200, json={"object": "list", "data": [
        {"id": "gpt-5.4-nano", "object": "model", "created": 0, "owned_by": "x"}]})  # fmt: skip


def refusing(status: int) -> httpx2.Response:
    # The provider's message quotes part of the key: it must not reach our message.
    body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "t",
                      "param": None, "code": "invalid_api_key"}}  # fmt: skip
    return httpx2.Response(status, json=body)


class Paths:
    """A transport that answers by path and records which paths were asked."""

    def __init__(self, **by_path: httpx2.Response) -> None:
        self.by_path = by_path
        self.asked: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        self.asked.append(path)
        return self.by_path[path]


def probe_client(paths: Paths, **settings: Any) -> ModelClient:
    config = ModelSettings(**{"api_key": KEY, "base_url": "http://user:pw@sim.test:81/v1",
                              **settings})  # fmt: skip
    return ModelClient(
        config, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(paths))
    )


@pytest.mark.asyncio
async def test_an_endpoint_that_answers_passes() -> None:
    """The models list answers: one request, no chat call."""
    paths = Paths(models=models_page())
    await probe_client(paths).probe()
    assert paths.asked == ["models"]


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_names_the_address_not_the_key(status: int) -> None:
    """401/403: the message names the address (no user info) and the setting, and
    carries no part of the key."""
    with pytest.raises(ModelUnreachable) as caught:
        await probe_client(Paths(models=refusing(status))).probe()
    message = str(caught.value)
    assert "http://sim.test:81/v1" in message
    assert f"HTTP {status}" in message
    assert "model.api_key" in message
    assert KEY[:8] not in message
    assert "user:pw" not in message


@pytest.mark.asyncio
async def test_no_key_says_so() -> None:
    """Without any key the message says that none is set."""
    with pytest.raises(ModelUnreachable, match="no API key is set"):
        await probe_client(Paths(models=refusing(401)), api_key=None).probe()


@pytest.mark.asyncio
async def test_without_a_models_list_one_token_is_asked() -> None:
    """A server without /models is asked for one token; a refusal there counts too."""
    paths = Paths(models=error(404), completions=completion("{}"))
    await probe_client(paths).probe()
    assert paths.asked == ["models", "completions"]
    with pytest.raises(ModelUnreachable, match="refused"):
        await probe_client(Paths(models=error(404), completions=refusing(401))).probe()


@pytest.mark.asyncio
async def test_a_failing_endpoint_is_still_up() -> None:
    """A 503 or a 429 at start-up is an answer: the probe lets the run begin."""
    await probe_client(Paths(models=error(503))).probe()
    await probe_client(Paths(models=error(429))).probe()


@pytest.mark.asyncio
async def test_a_server_that_comes_up_a_little_later_is_waited_for() -> None:
    """A model server started beside the processor (a sidecar still loading its
    weights) refuses connections for a while: the probe asks again, over real TCP."""
    port = closed_port()
    body = b'{"object": "list", "data": []}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        writer.write(head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def later() -> asyncio.Server:
        await asyncio.sleep(1.5)
        return await asyncio.start_server(answer, "127.0.0.1", port)

    starting = asyncio.create_task(later())
    model = ModelClient(ModelSettings(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1"))
    try:
        await model.probe()  # raised ModelUnreachable at the first refused connection
    finally:
        await model.aclose()
        server = await starting
        server.close()


@pytest.mark.asyncio
async def test_no_server_at_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens there: unreachable, naming the address, over real TCP."""
    monkeypatch.setattr(probe_module, "PROBE_WAIT_S", 1.0)
    port = closed_port()
    model = ModelClient(ModelSettings(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(ModelUnreachable, match=f"127.0.0.1:{port}/v1 cannot be reached"):
        await model.probe()
    await model.aclose()


def test_run_with_an_unreachable_model_exits_3(tmp_path: Path) -> None:
    """``sluicegate run`` stops at once with exit 3 and names the model's address, before
    it waits on anything else (here Kafka is unreachable too)."""
    port = closed_port()
    config = tmp_path / "sluicegate.toml"
    config.write_text(f"""
[kafka]
bootstrap_servers = "127.0.0.1:{closed_port()}"
[model]
base_url = "http://127.0.0.1:{port}/v1"
[[routes]]
name = "reviews"
input_topics = ["in"]
output_topic = "out"
handler = "sentiment"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLUICEGATE_"))}
    env["OPENAI_API_KEY"] = KEY
    done = subprocess.run([sys.executable, "-m", "stream", "run", "-c", str(config)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"127.0.0.1:{port}/v1 cannot be reached" in done.stderr
    assert KEY not in done.stderr + done.stdout
