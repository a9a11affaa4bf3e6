"""What the load benchmarks run: the simulator and ``sluicegate run`` as processes of their
own, topics stamped by the broker, and what is read off them while they run.

The processor is a real ``sluicegate run`` subprocess with a TOML config, so that its
resident memory (``VmRSS``) is its own, and its consumer group's lag is read from Kafka
with an admin client (committed offsets against the high watermarks), as an operator
would, not from the processor's word. Every topic stamps its records with the broker's
clock (``message.timestamp.type = LogAppendTime``): an output's timestamp minus its
input's is the time from the moment the event could be read to the moment its result
could be, and the input is found through the output's trace headers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from prometheus_client.parser import text_string_to_metric_families

from ops.kafka.broker import free_port
from stream.simulator.settings import SimulatorSettings

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # PR_SET_PDEATHSIG = 1: SIGTERM to the child if the benchmark dies, however it dies.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


# -- topics ---------------------------------------------------------------------------------


def create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    """Fresh topics (name -> partitions) whose records carry the broker's append time."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, n, config=APPEND_TIME) for name, n in topics.items()]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result(30)


class LagMeter:
    """A consumer group's lag as an operator reads it: the high watermark of each input
    partition minus the group's committed offset (nothing committed counts from 0)."""

    def __init__(self, bootstrap: str, group: str, partitions: Mapping[str, int]) -> None:
        self.group = group
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        # Only asks for watermarks: it never joins a group.
        self.watermarks = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-lag"})
        self.tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]

    def __call__(self) -> int:
        request = [ConsumerGroupTopicPartitions(self.group, self.tps)]
        answer = self.admin.list_consumer_group_offsets(request)[self.group].result(10)
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in answer.topic_partitions}
        lag = 0
        for tp in self.tps:
            _, high = self.watermarks.get_watermark_offsets(tp, timeout=10)
            lag += max(0, high - committed.get((tp.topic, tp.partition), 0))
        return lag

    def close(self) -> None:
        self.watermarks.close()


# -- the simulator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sim:
    """A simulator process (``tests.bench.simulated``): its ``/v1`` URL and controls."""

    url: str

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - our own simulator on 127.0.0.1
            self.url.removesuffix("/v1") + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", "/sim/stats")
        return answer

    def configure(self, **changes: Any) -> None:
        self._call("POST", "/sim/config", changes)

    def reset(self) -> None:
        self._call("POST", "/sim/reset")

    def drain(self) -> None:
        """Both rate-limit buckets empty, as a minute into a run at the limit."""
        self._call("POST", "/bench/drain")


@contextlib.contextmanager
def simulator(settings: SimulatorSettings) -> Iterator[Sim]:
    """The simulator in a process of its own (on a free port) for the block."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.simulated",
         settings.model_copy(update={"port": 0}).model_dump_json()],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_die_with_parent,  # noqa: PLW1509
    )  # fmt: skip
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        line = child.stdout.readline()
        if not line.startswith(b"http"):
            raise RuntimeError(f"the simulator process did not start (it said {line!r})")
        yield Sim(line.decode().strip())
    finally:
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- the processor ----------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A value in TOML (strings, numbers, booleans, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(config: Mapping[str, Any]) -> str:
    """A config file: one ``[section]`` per mapping, other keys (``routes``) on top."""
    top = [f"{k} = {toml_value(v)}" for k, v in config.items() if not isinstance(v, dict)]
    sections = [
        f"[{name}]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in table.items())
        for name, table in config.items()
        if isinstance(table, dict)
    ]
    return "\n".join(top) + "\n\n" + "\n\n".join(sections) + "\n"


# The checkout this harness belongs to: its processors run this code.
CHECKOUT = Path(__file__).resolve().parents[2]


def sluicegate_command() -> list[str]:
    """``sluicegate`` as this checkout's code: ``python -m stream`` run from its root.
    (The venv's ``sluicegate`` script imports whichever checkout the venv was installed
    from, which for a venv shared between checkouts measured another one's code.)"""
    return [sys.executable, "-m", "stream"]


class ProcessorProcess:
    """``sluicegate run --config FILE`` as a child process, its log in a file beside the
    config; metrics on a free port of 127.0.0.1."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "processor") -> None:
        self.metrics_port = free_port()
        config = {**config, "metrics": {"enabled": True, "host": "127.0.0.1",
                                        "port": self.metrics_port}}  # fmt: skip
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(toml_text(config))
        self.log_path = workdir / f"{name}.log"
        self.name = name
        self._terminated = False
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*sluicegate_command(), "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=CHECKOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - see _die_with_parent
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident memory, from ``/proc/<pid>/status`` (``VmRSS``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def metrics(self) -> dict[str, float]:
        """Every sample of ``/metrics`` as ``name{label="value",...}`` -> value."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Until ``/readyz`` says partitions are assigned."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def terminate(self) -> None:
        """SIGTERM without waiting (to stop several at once); ``stop()`` waits."""
        if self.alive() and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        """SIGTERM (drain, commit, leave the group), SIGKILL if it hangs; the exit code."""
        self.terminate()
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.wait()


def metric(values: Mapping[str, float], name: str, **labels: str) -> float:
    """One sample's value (0 if absent); ``labels`` must match exactly."""
    key = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return values.get(f"{name}{{{key}}}" if key else name, 0.0)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A scratch directory for configs and logs, removed afterwards unless
    ``SLUICEGATE_BENCH_KEEP`` is set (then its path is printed)."""
    path = Path(tempfile.mkdtemp(prefix=f"sluicegate-{prefix}-"))
    try:
        yield path
    finally:
        if os.environ.get("SLUICEGATE_BENCH_KEEP"):
            print(f"kept the configs and logs in {path}", flush=True)
        else:
            for child in path.iterdir():
                child.unlink()
            path.rmdir()


def processor_config(
    bootstrap: str,
    group: str,
    routes: list[dict[str, Any]],
    model_url: str,
    *,
    model: Mapping[str, Any] | None = None,
    processing: Mapping[str, Any] | None = None,
    prefix: str = "bench",
) -> dict[str, Any]:
    """A user's config for the benchmark's topics: the defaults, the model at
    ``model_url`` with ``model`` keys changed, dead letters and alerts on own topics."""
    config: dict[str, Any] = {
        "routes": routes,
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "model": {"base_url": model_url, "api_key": "sim", **(model or {})},
        "dlq": {"topic": f"{prefix}.dlq"},
        "alerts": {"topic": f"{prefix}.alerts"},
        "log": {"level": "INFO", "format": "json"},
    }
    if processing:
        config["processing"] = dict(processing)
    return config
