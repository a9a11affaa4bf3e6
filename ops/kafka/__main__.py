"""``python -m ops.kafka up|down|status|bootstrap|fetch|run``: the local broker at the shell."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from ops.kafka import broker as kafka


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.kafka",
        description=f"Run Apache Kafka {kafka.KAFKA_VERSION} (from Maven Central) on 127.0.0.1.",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=kafka.default_state_dir(),
        help="where the detached broker's pid and address are kept (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a detached broker (or reuse the running one)")
    up.add_argument("--port", type=int, default=None, help="listener port (default: a free one)")
    sub.add_parser("down", help="stop the detached broker and delete its data")
    sub.add_parser("status", help="say whether the detached broker runs; exit 1 if not")
    sub.add_parser("bootstrap", help="print the running broker's address only; exit 1 if none")
    sub.add_parser("fetch", help="download the broker jars into the cache, nothing else")
    run = sub.add_parser("run", help="run a broker in the foreground until Ctrl-C")
    run.add_argument("--port", type=int, default=None, help="listener port (default: a free one)")
    args = parser.parse_args(argv)

    try:
        return _dispatch(args)
    except kafka.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    if args.command == "up":
        b = kafka.up(state_dir, port=args.port)
        print(f"Kafka {b.version} is up at {b.bootstrap} (pid {b.pid}, data {b.data_dir})")
        print(f"  check it:  kcat -b {b.bootstrap} -L")
        print("  stop it:   make kafka-down")
        print(f"KAFKA_BOOTSTRAP_SERVERS={b.bootstrap}")
        return 0
    if args.command == "down":
        stopped = kafka.down(state_dir)
        print(f"stopped Kafka at {stopped.bootstrap}" if stopped else "no local Kafka was running")
        return 0
    if args.command in ("status", "bootstrap"):
        found = kafka.current(state_dir)
        if found is None or not kafka.answers_metadata(found.port):
            if args.command == "status":
                print("no local Kafka is running (start one with `make kafka-up`)")
            return 1
        if args.command == "bootstrap":
            print(found.bootstrap)
        else:
            print(f"Kafka {found.version} is up at {found.bootstrap} (pid {found.pid})")
        return 0
    if args.command == "fetch":
        print(kafka.ensure_jars())
        return 0
    return _run_foreground(args.port)


def _run_foreground(port: int | None) -> int:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with kafka.running(port=port) as b:
        print(f"Kafka {b.version} is up at {b.bootstrap}; Ctrl-C stops it", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
