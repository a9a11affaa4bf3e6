"""The ``sluicegate`` command line (also ``python -m stream``).

Exit codes (documented in the README):
    0  success
    1  the processor stopped on a runtime failure (e.g. the DLQ cap tripped)
    2  bad usage or configuration: the message names the key and what is accepted
    3  a dependency (Kafka, the model endpoint) could not be reached
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream import __version__, secrets
from stream.cli.cost import add_cost_commands
from stream.cli.dlq import add_dlq_commands
from stream.cli.eval import add_eval_command
from stream.cli.produce import add_traffic_commands
from stream.config import load
from stream.errors import ConfigError, KafkaUnavailable, SluicegateError
from stream.simulator.cli import add_simulator_command
from stream.telemetry import logs

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluicegate",
        description="Enrich Kafka events with a cheap LLM; publish results, DLQ and alerts.",
    )
    parser.add_argument("--version", action="version", version=f"sluicegate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the processor with a config file and the environment")
    _config_option(run)
    run.set_defaults(handler=_cmd_run)

    config = sub.add_parser("config", help="inspect configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser(
        "check", help="validate a config and print the effective settings, secrets masked"
    )
    _config_option(check)
    check.set_defaults(handler=_cmd_config_check)

    demo = sub.add_parser(
        "demo", help="demo topics, sample traffic, and the processor enriching it"
    )
    demo.add_argument(
        "--bootstrap-servers",
        default=None,
        help="Kafka to use (default: kafka.bootstrap_servers from config/environment)",
    )
    demo.add_argument(
        "--produce-only",
        action="store_true",
        help="create the topics and produce the samples, but do not run the processor",
    )
    demo.set_defaults(handler=_cmd_demo)

    add_dlq_commands(sub)
    add_cost_commands(sub)  # `dlq inspect` and `dlq replay`; each sets its own handler
    add_eval_command(sub)
    add_traffic_commands(sub)  # `produce` and `tail`
    add_bench_command(sub)
    add_simulator_command(sub)  # `simulate-nano`; imports the server only when it runs
    return parser


BENCHMARKS = ("framework_overhead", "model_throughput", "token_cost", "startup")


def add_bench_command(sub: Any) -> None:
    bench = sub.add_parser(
        "bench", help="run the benchmarks of `make bench` (from a source checkout)"
    )
    bench.add_argument("name", nargs="*", metavar="NAME",
                       help=f"which ones (default: all): {', '.join(BENCHMARKS)}")  # fmt: skip
    bench.add_argument("--write", type=Path, default=None, help="update this BENCHMARKS.md")
    bench.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import importlib.util  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    names = args.name or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise ConfigError(f"no benchmark {', '.join(unknown)}; accepted: {', '.join(BENCHMARKS)}")
    if importlib.util.find_spec("tests.bench") is None:
        raise ConfigError(
            "the benchmarks live in the source tree (tests/bench): run `sluicegate bench` "
            "from a checkout of the repository, or `make bench` there"
        )
    for name in names:
        command = [sys.executable, "-m", f"tests.bench.{name}"]
        if args.write is not None:
            command += ["--write", str(args.write)]
        print(f"==> {' '.join(command)}", file=sys.stderr)
        code = subprocess.call(command)
        if code:
            return code
    return EXIT_OK


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="TOML config file (default: $SLUICEGATE_CONFIG, else defaults plus environment)",
    )


def _cmd_config_check(args: argparse.Namespace) -> int:
    from stream.kafka.admin import check_client_options  # noqa: PLC0415
    from stream.model.cost import check_prices  # noqa: PLC0415
    from stream.routes import build_routes  # noqa: PLC0415 - keeps `--help` fast

    settings = load(args.config)
    routes_built = build_routes(settings)  # handler names and their options
    check_prices(settings)  # as `run` does: a model id without a price stops it
    check_client_options(settings.kafka)  # and a librdkafka option it refuses
    shown = settings.as_dict()
    # Each route's options as its handler took them: the defaults in effect included.
    for route, built in zip(shown["routes"], routes_built, strict=True):
        route["options"] = secrets.mask_mapping(built.handler.effective_options())
    print(json.dumps(shown, indent=2))
    routes = len(settings.routes)
    print(f"config OK: {routes} route{'s' if routes != 1 else ''}", file=sys.stderr)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from stream.app import run_processor  # noqa: PLC0415 - keeps `--help` fast

    return run_processor(load(args.config))


def _cmd_demo(args: argparse.Namespace) -> int:
    from stream.cli.demo import run_demo  # noqa: PLC0415 - keeps `--help` fast

    return run_demo(args.bootstrap_servers, produce_only=args.produce_only)


def fail(exc: BaseException) -> None:
    """Say why the command stopped, secrets masked (a provider's 401 quotes the key)."""
    print(f"sluicegate: {secrets.mask_text(str(exc))}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Command = args.handler
    logs.ensure_cli_logging()  # `run` replaces it with the configured format
    try:
        return handler(args)
    except ConfigError as exc:
        fail(exc)
        return EXIT_CONFIG
    except KafkaUnavailable as exc:
        fail(exc)
        return EXIT_UNAVAILABLE
    except SluicegateError as exc:
        fail(exc)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
