"""The local broker launcher: detached up/down for the shell, no orphans for the tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ops.kafka import broker as local_kafka

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


def ops_cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.kafka", "--state-dir", str(state_dir), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def wait_gone(pid: int, data_dir: str, timeout: float = 40.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not local_kafka.is_alive(pid, data_dir):
            return True
        time.sleep(0.2)
    return False


def test_up_status_down(tmp_path: Path) -> None:
    """`up` starts a broker that answers metadata and survives the command; `up` again
    reuses it; `down` stops the JVM and deletes its data."""
    started = ops_cli(tmp_path, "up")
    assert started.returncode == 0, started.stderr
    broker = local_kafka.current(tmp_path)
    assert broker is not None
    try:
        assert f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}" in started.stdout
        assert local_kafka.answers_metadata(broker.port)
        again = ops_cli(tmp_path, "up")
        assert again.returncode == 0
        assert local_kafka.current(tmp_path) == broker
        bootstrap = ops_cli(tmp_path, "bootstrap")
        assert bootstrap.stdout.strip() == broker.bootstrap
    finally:
        stopped = ops_cli(tmp_path, "down")
    assert stopped.returncode == 0
    assert wait_gone(broker.pid, broker.data_dir, timeout=5)
    assert not Path(broker.data_dir).exists()
    assert ops_cli(tmp_path, "status").returncode == 1
    assert ops_cli(tmp_path, "bootstrap").returncode == 1


def test_attached_broker_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A test run killed with SIGKILL leaves no orphan JVM behind."""
    script = (
        "import sys, time\n"
        "from ops.kafka import broker\n"
        "b = broker.start(attached=True)\n"
        "print(b.pid, b.data_dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    ) as parent:
        try:
            assert parent.stdout is not None
            line = parent.stdout.readline().split()
            assert line, "the broker did not start"
            pid, data_dir = int(line[0]), line[1]
            assert local_kafka.is_alive(pid, data_dir)
        finally:
            parent.send_signal(signal.SIGKILL)
    assert wait_gone(pid, data_dir), f"JVM {pid} outlived its killed parent"
    local_kafka.sweep_stale()
    assert not Path(data_dir).exists()


def test_unknown_pid_is_not_ours() -> None:
    """is_alive checks the command line, so a recycled pid is never signalled."""
    assert local_kafka.is_alive(os.getpid())
    assert not local_kafka.is_alive(os.getpid(), "/nonexistent/sluicegate-kafka-x")


def test_a_halted_broker_is_not_swept() -> None:
    """The data of a broker halted on purpose (halt(), then restart()) survives the
    sweep of stale data directories; without the mark it would not."""
    path = Path(tempfile.mkdtemp(prefix=local_kafka.DATA_PREFIX))
    try:
        (path / local_kafka.STATE_FILE).write_text(json.dumps({"pid": os.getpid()}))
        (path / local_kafka.HALTED_FILE).touch()
        local_kafka.sweep_stale()
        assert path.exists()
        (path / local_kafka.HALTED_FILE).unlink()
        local_kafka.sweep_stale()
        assert not path.exists()
    finally:
        shutil.rmtree(path, ignore_errors=True)
