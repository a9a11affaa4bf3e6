"""Run the real Apache Kafka broker on 127.0.0.1 without Docker.

The broker's jars come from Maven Central (``ops/kafka/pom.xml``) into a cache outside the
repository; each run formats a fresh KRaft data directory and starts one combined
broker+controller JVM on free ports. One module serves three callers:

* the test fixture (``start(attached=True)``): the JVM gets SIGTERM when its parent dies,
  so an interrupted or killed test run leaves no orphan broker;
* ``make kafka-up`` / ``make kafka-down`` (``up()`` / ``down()``): a detached broker whose
  pid and address live in a state file, so later commands find it;
* ``make demo``, which reuses the broker ``kafka-up`` started or starts one.

The fault tests also take a broker down and bring it back (``halt()``, ``restart()``):
same data directory, same ports, as a broker that went away and came back.

Standard library only, so it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ops.kafka.maven import run_quietly

KAFKA_VERSION = os.environ.get("SLUICEGATE_KAFKA_VERSION", "4.1.1")
# Kafka's own Log4j version for the release above; only the tarball ships the binding.
LOG4J_VERSION = os.environ.get("SLUICEGATE_KAFKA_LOG4J_VERSION", "2.24.3")
HEAP = os.environ.get("SLUICEGATE_KAFKA_HEAP", "-Xms256m -Xmx512m").split()

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA_PREFIX = "sluicegate-kafka-"
STATE_FILE = "broker.json"
# Present while a broker is halted on purpose: its data directory is not stale.
HALTED_FILE = "halted"
HALTED_KEEP_S = 3600


# JVMs this process started, kept so they are reaped (and not reported as leaked) on stop.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why."""


@dataclass(frozen=True)
class Broker:
    """A running local broker: where to reach it and how to stop it."""

    bootstrap: str
    pid: int
    data_dir: str
    controller_port: int
    version: str = KAFKA_VERSION

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])


def cache_dir() -> Path:
    """Where downloaded jars live: ``$SLUICEGATE_CACHE_DIR``, else the XDG cache."""
    explicit = os.environ.get("SLUICEGATE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "sluicegate"


def _say(message: str) -> None:
    print(f"[kafka] {message}", file=sys.stderr, flush=True)


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"{tool!r} is not on PATH: {hint}")
    return path


def ensure_jars() -> Path:
    """Return the directory of broker jars, fetching them with Maven the first time.

    Maven runs quietly (its log in the cache, a progress line every few seconds). A file
    lock makes concurrent callers (a test run and ``make kafka-up``) wait for one download.
    """
    base = cache_dir() / f"kafka-{KAFKA_VERSION}"
    libs = base / "libs"
    if (libs / ".complete").exists():
        return libs
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / ".complete").exists():
            return libs
        mvn = _require("mvn", "install Maven 3.6+ (e.g. `apt-get install maven`) to fetch Kafka")
        _require("java", "install Java 17+ to run the Kafka broker")
        partial = base / f"libs.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        _say(
            f"fetching Apache Kafka {KAFKA_VERSION} and its runtime jars from Maven Central "
            f"into {libs} (first run only: about 45 MB of jars, and as much again in "
            "Maven's local repository ~/.m2)"
        )
        cmd = [
            mvn, "-f", str(HERE / "pom.xml"),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}", f"-Dlog4j.version={LOG4J_VERSION}",
            f"-DoutputDirectory={partial}",
        ]  # fmt: skip
        log = base / "maven.log"
        m2 = Path.home() / ".m2" / "repository" / "org" / "apache" / "kafka"
        code = run_quietly(cmd, log, [m2, partial], say=_say)
        if code != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise BrokerError(
                f"Maven could not fetch Kafka {KAFKA_VERSION} (exit {code}); check that "
                f"Maven Central is reachable (the end of its log is above; all of it in {log})"
            )
        if not any(partial.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"Maven finished but no kafka_2.13 jar is in {partial}")
        (partial / ".complete").write_text(KAFKA_VERSION)
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        _say(f"cached {sum(1 for _ in libs.glob('*.jar'))} jars in {libs}")
    return libs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir / "data"}
num.partitions=1
num.network.threads=2
num.io.threads=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""


def _java_cmd(libs: Path, data_dir: Path, main: str, heap: list[str]) -> list[str]:
    java = _require("java", "install Java 17+ to run the Kafka broker")
    return [
        java, *heap,
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent", "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={data_dir / 'logs'}",
        f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
        "-cp", f"{libs}/*", main,
    ]  # fmt: skip


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGTERM to the JVM when our process dies,
    # however it dies, and the JVM's shutdown hook stops the broker cleanly.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)


def _cluster_id() -> str:
    # Kafka's Uuid.toString(): 16 random bytes, base64url without padding (22 chars).
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def is_alive(pid: int, data_dir: str | None = None) -> bool:
    """True if ``pid`` is a live (not zombie) process, and, given ``data_dir``, ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return data_dir is None or data_dir.encode() in cmdline


def _metadata_brokers(port: int, timeout: float = 2.0) -> int:
    """Send a Kafka Metadata (v4) request; return how many brokers the answer lists.

    Hand-encoded so that readiness needs no client library: a TCP connect alone is not
    proof that the broker serves requests.
    """
    header = struct.pack(">hhi", 3, 4, 1) + struct.pack(">h", 10) + b"sluicegate"
    body = struct.pack(">i?", -1, False)  # all topics (null array), no auto-creation
    payload = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        answer = _recv_exact(sock, size)
    correlation_id, _throttle, broker_count = struct.unpack(">iii", answer[:12])
    if correlation_id != 1:
        raise BrokerError(f"unexpected metadata answer (correlation id {correlation_id})")
    return int(broker_count)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def answers_metadata(port: int) -> bool:
    try:
        return _metadata_brokers(port) > 0
    except (OSError, struct.error, BrokerError):
        return False


def _log_tail(data_dir: Path, lines: int = 25) -> str:
    out = []
    for name in ("stdout.log", "logs/server.log"):
        path = data_dir / name
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path} ---\n" + "\n".join(text))
    return "\n".join(out)


def sweep_stale() -> None:
    """Remove data directories of brokers that are gone (e.g. after a killed test run)."""
    for path in Path(tempfile.gettempdir()).glob(f"{DATA_PREFIX}*"):
        state = path / STATE_FILE
        try:
            halted = path / HALTED_FILE
            if halted.exists() and time.time() - halted.stat().st_mtime < HALTED_KEEP_S:
                continue  # to be restarted (see halt())
            if state.exists():
                pid = int(json.loads(state.read_text())["pid"])
                if is_alive(pid, str(path)):
                    continue
            elif time.time() - path.stat().st_mtime < 600:
                continue  # still being formatted by someone
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(path, ignore_errors=True)


def start(*, attached: bool, port: int | None = None, timeout: float = 120.0) -> Broker:
    """Format a fresh data directory, start the broker and wait until it serves metadata.

    ``attached``: the JVM dies with this process (tests). Otherwise it runs in its own
    session and outlives us (``make kafka-up``). A port taken between our probe and the
    JVM's bind is retried on new ports.
    """
    libs = ensure_jars()
    sweep_stale()
    last_error: BrokerError | None = None
    for _attempt in range(3):
        try:
            return _start_once(libs, attached=attached, port=port or free_port(), timeout=timeout)
        except _PortTaken as exc:
            last_error = exc
            if port is not None:
                break
    raise last_error or BrokerError("broker did not start")


class _PortTaken(BrokerError):
    pass


def _start_once(libs: Path, *, attached: bool, port: int, timeout: float) -> Broker:
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_PREFIX))
    (data_dir / "logs").mkdir()
    controller_port = free_port()
    props = data_dir / "server.properties"
    props.write_text(_server_properties(data_dir, port, controller_port))

    fmt = _java_cmd(libs, data_dir, "kafka.tools.StorageTool", ["-Xmx256m"])
    fmt += ["format", "--standalone", f"--cluster-id={_cluster_id()}", "-c", str(props)]
    formatted = subprocess.run(fmt, check=False, capture_output=True, text=True)
    if formatted.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise BrokerError(f"formatting KRaft storage failed:\n{formatted.stdout}{formatted.stderr}")

    proc = _launch(libs, data_dir, attached=attached)
    broker = Broker(f"127.0.0.1:{port}", proc.pid, str(data_dir), controller_port)
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(broker)))
    try:
        _wait_ready(proc, broker, timeout)
    except BrokerError:
        stop(broker)
        raise
    return broker


def _launch(libs: Path, data_dir: Path, *, attached: bool) -> subprocess.Popen[bytes]:
    cmd = [*_java_cmd(libs, data_dir, "kafka.Kafka", HEAP), str(data_dir / "server.properties")]
    with open(data_dir / "stdout.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=not attached,
            preexec_fn=_die_with_parent if attached else None,  # noqa: PLW1509 - see _die_with_parent
        )
    _CHILDREN[proc.pid] = proc
    return proc


def _wait_ready(proc: subprocess.Popen[bytes], broker: Broker, timeout: float) -> None:
    """Return once the broker answers metadata; raise if the JVM exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            tail = _log_tail(Path(broker.data_dir))
            if "Address already in use" in tail:
                raise _PortTaken(f"port {broker.port} or {broker.controller_port} was taken")
            raise BrokerError(f"Kafka exited with code {proc.returncode} while starting:\n{tail}")
        if answers_metadata(broker.port):
            return
        time.sleep(0.2)
    tail = _log_tail(Path(broker.data_dir))
    raise BrokerError(f"Kafka did not answer metadata requests within {timeout:.0f}s:\n{tail}")


def halt(broker: Broker, timeout: float = 30.0) -> None:
    """Stop the JVM (SIGTERM: controlled shutdown) but keep its data, so that ``restart``
    brings the same broker back on the same ports: a broker outage, for fault tests."""
    (Path(broker.data_dir) / HALTED_FILE).touch()
    _terminate(broker, timeout)


def restart(broker: Broker, *, attached: bool = True, timeout: float = 120.0) -> Broker:
    """Start a halted broker again from its data directory; returns it with its new pid."""
    data_dir = Path(broker.data_dir)
    if is_alive(broker.pid, broker.data_dir):
        raise BrokerError(f"broker pid {broker.pid} is still running; halt() it first")
    if not (data_dir / "server.properties").exists():
        raise BrokerError(f"{data_dir} holds no broker to restart (stopped, or swept)")
    proc = _launch(ensure_jars(), data_dir, attached=attached)
    again = Broker(broker.bootstrap, proc.pid, broker.data_dir, broker.controller_port)
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(again)))
    (data_dir / HALTED_FILE).unlink(missing_ok=True)
    _wait_ready(proc, again, timeout)
    return again


def stop(broker: Broker, timeout: float = 30.0) -> None:
    """SIGTERM (controlled shutdown), SIGKILL after ``timeout``, then remove the data."""
    _terminate(broker, timeout)
    shutil.rmtree(broker.data_dir, ignore_errors=True)


def _terminate(broker: Broker, timeout: float) -> None:
    if is_alive(broker.pid, broker.data_dir):
        os.kill(broker.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while is_alive(broker.pid, broker.data_dir) and time.monotonic() < deadline:
            _reap(broker.pid)
            time.sleep(0.1)
        if is_alive(broker.pid, broker.data_dir):
            _say(f"broker pid {broker.pid} ignored SIGTERM for {timeout:.0f}s; killing it")
            os.kill(broker.pid, signal.SIGKILL)
            while is_alive(broker.pid, broker.data_dir):
                _reap(broker.pid)
                time.sleep(0.05)
    _reap(broker.pid)


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@contextlib.contextmanager
def running(*, port: int | None = None) -> Iterator[Broker]:
    """A broker attached to this process for the duration of the ``with`` block."""
    broker = start(attached=True, port=port)
    try:
        yield broker
    finally:
        stop(broker)


# --- the detached broker of `make kafka-up`, found again through a state file ---------


def default_state_dir() -> Path:
    return Path(os.environ.get("SLUICEGATE_KAFKA_STATE_DIR") or REPO / ".kafka")


def current(state_dir: Path) -> Broker | None:
    """The broker recorded in ``state_dir`` if it is still running, else None."""
    path = state_dir / STATE_FILE
    try:
        broker = Broker(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return broker if is_alive(broker.pid, broker.data_dir) else None


def up(state_dir: Path, port: int | None = None) -> Broker:
    """Start a detached broker, or return the one already running for this state dir."""
    existing = current(state_dir)
    if existing is not None:
        if answers_metadata(existing.port):
            return existing
        stop(existing)
    broker = start(attached=False, port=port)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).write_text(json.dumps(asdict(broker), indent=2) + "\n")
    (state_dir / "bootstrap").write_text(broker.bootstrap + "\n")
    return broker


def down(state_dir: Path) -> Broker | None:
    """Stop the broker recorded in ``state_dir`` (if any) and forget it."""
    path = state_dir / STATE_FILE
    broker = None
    with contextlib.suppress(OSError, ValueError, TypeError):
        broker = Broker(**json.loads(path.read_text()))
    if broker is not None:
        stop(broker)
    for name in (STATE_FILE, "bootstrap"):
        (state_dir / name).unlink(missing_ok=True)
    return broker
