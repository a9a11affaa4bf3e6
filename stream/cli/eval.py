"""``sluicegate eval HANDLER --data FILE``: a table of how a handler does on labelled data,
and (``--write EVAL.md``) the same table in the report, with the command that made it."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

from stream.cli.eval_teacher import add_teacher_arguments, run_teacher
from stream.config import load
from stream.errors import ConfigError

START = "<!-- eval:{name}:start -->"
END = "<!-- eval:{name}:end -->"
INTRO = """\
# Evaluation

Produced by `make eval` (`sluicegate eval`) on the labelled public data described in
`../shared/datasets/README.md`. Each handler runs three ways over the same rows: its
free local tier alone (threshold 0: it answers whatever it can), the cascade a route
runs by default (the local tier answers when its confidence clears the handler's
threshold, the model answers the rest), and the model alone.

**Figures obtained with the simulator measure the plumbing** (which tier answered,
model calls, tokens and dollars per 1,000 events), **not a real model's quality**: the
simulator labels events with the same local heuristics, so its accuracy says nothing
about GPT-5.4 nano. The local tier's figures are real: they are the free tier's own
answers. Point `sluicegate eval` at the real API (`OPENAI_API_KEY`) to measure nano.
"""


def add_eval_command(sub: Any) -> None:
    ev = sub.add_parser("eval", help="measure a handler on a labelled file (see EVAL.md)")
    ev.add_argument(
        "target", metavar="HANDLER", choices=["sentiment", "moderation", "logs", "task"],
        help="sentiment, moderation, logs or task",
    )  # fmt: skip
    ev.add_argument("--data", type=Path, required=True, action="append",
                    help="labelled .csv, .tsv or .jsonl (repeatable); logs: also a Loghub "
                    "folder")  # fmt: skip
    ev.add_argument("-c", "--config", type=Path, default=None,
                    help="config (model, prices; the handler's route: options)")  # fmt: skip
    ev.add_argument("--route", default=None,
                    help="the route whose options to use, if several run the handler")  # fmt: skip
    ev.add_argument("--limit", type=int, default=None, help="use the first N rows only")
    ev.add_argument("--write", type=Path, default=None, help="put the table into this file")
    add_teacher_arguments(ev)
    ev.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from stream.evaluation import handlers as evaluate  # noqa: PLC0415 - keeps `--help` fast
    from stream.evaluation import logs as evaluate_logs  # noqa: PLC0415

    settings = load(args.config)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: give a number of rows, 1 or more")
    options = evaluate.route_options(settings, args.target, args.route, args.config)
    for path in args.data:
        if not path.exists():
            raise ConfigError(f"--data: {path} does not exist")
    if args.teacher:
        return run_teacher(args, settings, write_section)
    sections = []
    for path in args.data:
        try:
            if args.target == "logs":
                text = asyncio.run(
                    evaluate_logs.report_logs(path, settings, limit=args.limit, options=options)
                )
            else:
                result = asyncio.run(
                    evaluate.evaluate(
                        args.target, path, settings, limit=args.limit, options=options
                    )
                )
                text = evaluate.report(args.target, path, result)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"--data {path}: cannot evaluate {args.target}: {exc}") from None
        print(text)
        sections.append(text)
    if args.write is not None:
        command = "sluicegate " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "sluicegate eval"
        body = f"Command: `{command}`\n\n" + "\n\n".join(sections)
        write_section(args.write, args.target, body)
        print(f"wrote the {args.target} section of {args.write}", file=sys.stderr)
    return 0


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the handler's section of ``path`` (created with the intro if missing)."""
    start, end = START.format(name=name), END.format(name=name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else INTRO
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
