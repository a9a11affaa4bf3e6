"""``sluicegate eval HANDLER --data FILE --teacher``: the learned tier over a stream,
against the simulator in teacher mode (stream/evaluation/teacher.py)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.errors import ConfigError


def add_teacher_arguments(ev: Any) -> None:
    ev.add_argument("--teacher", action="store_true",
                    help="stream the file in order through the learned tier, the simulator "
                    "answering the file's labels (sentiment, moderation)")  # fmt: skip
    ev.add_argument("--teacher-noise", type=float, default=0.1,
                    help="share of the teacher's labels flipped (default 0.1)")  # fmt: skip
    ev.add_argument("--window", type=int, default=500, help="events per reported window")
    ev.add_argument("--local-target", type=float, default=None,
                    help="--teacher: the route's local_target (default 0.95): the agreement "
                    "with the model the learned tier must keep")  # fmt: skip
    ev.add_argument("--plot", type=Path, default=None, help="--teacher: write the curves (PNG)")


def run_teacher(
    args: argparse.Namespace, settings: Settings, write_section: Callable[[Path, str, str], None]
) -> int:
    from stream.evaluation import teacher  # noqa: PLC0415 - keeps `--help` fast

    if args.target == "logs":
        raise ConfigError("--teacher: sentiment or moderation (logs have their own teacher)")
    if not 0 <= args.teacher_noise <= 1:
        raise ConfigError(f"--teacher-noise: {args.teacher_noise} is not between 0 and 1")
    if args.window < 1:
        raise ConfigError(f"--window: {args.window} is not a positive number of events")
    target = args.local_target
    if target is not None and not 0 < target <= 1:
        raise ConfigError(f"--local-target: {target} is not in (0, 1]")
    options = {} if target is None else {"local_target": target}
    runs, sections = [], []
    for path in args.data:
        try:
            run = asyncio.run(teacher.stream_with_teacher(
                args.target, path, settings, noise=args.teacher_noise, window=args.window,
                limit=args.limit, options=options,
            ))  # fmt: skip
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"--data {path}: cannot evaluate {args.target}: {exc}") from None
        runs.append(run)
        text = teacher.report_teacher(run, args.plot)
        print(text)
        sections.append(text)
    if args.plot is not None:
        try:
            teacher.plot_teacher(runs, args.plot)
        except ValueError as exc:
            raise ConfigError(f"--plot {args.plot}: {exc}") from None
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.write is not None:
        command = "sluicegate " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "sluicegate eval"
        note = (
            "Measured against the simulator in teacher mode (`simulate-nano --teacher FILE`): "
            "the model here answers the file's label, flipped at random on "
            f"{args.teacher_noise:.0%} of texts. It stands in for a model of known quality; "
            "it is not GPT-5.4 nano. Agreement with that teacher on texts the student has not "
            f"seen cannot exceed about {1 - args.teacher_noise:.2f}."
        )
        body = f"Command: `{command}`\n\n{note}\n\n" + "\n\n".join(sections)
        write_section(args.write, f"{args.target}-learned", body)
        print(f"wrote the {args.target}-learned section of {args.write}", file=sys.stderr)
    return 0
