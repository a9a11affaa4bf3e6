"""``sluicegate cost estimate``: dollars per day for a traffic shape, naive vs batched."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from stream.config import load
from stream.errors import ConfigError
from stream.model.estimate import DailyCost, daily_cost, sample_content_tokens


def add_cost_commands(sub: Any) -> None:
    cost = sub.add_parser("cost", help="predict what the model will cost")
    actions = cost.add_subparsers(dest="cost_command", required=True, metavar="ACTION")
    est = actions.add_parser(
        "estimate",
        help="dollars per day for a daily volume: one call per event vs batched and cached",
    )
    est.add_argument("-c", "--config", type=Path, default=None, help="config (for prices)")
    est.add_argument("--per-day", type=int, required=True, help="events per day")
    size = est.add_mutually_exclusive_group(required=True)
    size.add_argument("--sample", type=Path, help="sample events, one per line (JSONL or text)")
    size.add_argument("--content-tokens", type=float, help="input tokens of one event's content")
    est.add_argument("--sample-field", default="text", help="JSON field holding the text")
    est.add_argument("--output-tokens", type=float, default=20, help="output tokens per event")
    est.add_argument(
        "--static-tokens", type=int, default=0,
        help="instruction tokens (system prompt, schema, examples) paid per request",
    )  # fmt: skip
    est.add_argument("--batch-size", type=int, default=16, help="events per request")
    est.add_argument("--cache-hit-rate", type=float, default=0.0, help="share answered by cache")
    est.add_argument("--model", default=None, help="model id (default: model.model)")
    est.add_argument("--tier", choices=["default", "flex"], default="default")
    est.set_defaults(handler=_cmd_estimate)


def _cmd_estimate(args: argparse.Namespace) -> int:
    settings = load(args.config)
    model = args.model or settings.model.model
    prices = settings.budget.price_table().get(model)
    if prices is None:
        raise ConfigError(f"budget.prices: no price for model {model!r}")
    if args.per_day < 0 or args.batch_size < 1 or not 0 <= args.cache_hit_rate <= 1:
        raise ConfigError("--per-day >= 0, --batch-size >= 1, 0 <= --cache-hit-rate <= 1")
    if args.sample is not None:
        try:
            content = sample_content_tokens(args.sample, args.sample_field)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--sample: {exc}") from None
    else:
        content = args.content_tokens
    shape = {"per_day": args.per_day, "content_tokens": content,
             "output_tokens": args.output_tokens, "static_tokens": args.static_tokens}  # fmt: skip
    rows = [
        daily_cost(prices, label="one call per event", **shape),
        daily_cost(prices, label=f"batches of {args.batch_size}, cache {args.cache_hit_rate:.0%}"
                   f"{', flex' if args.tier == 'flex' else ''}", batch_size=args.batch_size,
                   cache_hit_rate=args.cache_hit_rate, tier=args.tier, **shape),
    ]  # fmt: skip
    print(
        f"{model}: ${prices.input}/M input, ${prices.cached_input}/M cached, "
        f"${prices.output}/M output; {args.per_day:,} events/day, {content:.0f} content + "
        f"{args.static_tokens} static input tokens, {args.output_tokens:.0f} output tokens"
    )
    _table(rows)
    return 0


def _table(rows: list[DailyCost]) -> None:
    print(f"{'':40} {'requests':>10} {'input tok':>13} {'cached tok':>13} "
          f"{'output tok':>12} {'$/day':>9}")  # fmt: skip
    for r in rows:
        print(f"{r.label:40} {r.requests:>10,.0f} {r.input_tokens:>13,.0f} "
              f"{r.cached_tokens:>13,.0f} {r.output_tokens:>12,.0f} {r.usd:>9.2f}")  # fmt: skip
