"""``sluicegate cost estimate``: dollars per day for a traffic shape, naive vs batched."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from handlers.model import Task
from stream.config import Settings, load
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
    est.add_argument(
        "--route", default=None,
        help="a configured route: its handler's prompt, schema and answer size set the "
        "static and output tokens, the model config the batch size",
    )  # fmt: skip
    est.add_argument("--output-tokens", type=float, default=None,
                     help="output tokens per event (default: the route's, else 20)")  # fmt: skip
    est.add_argument(
        "--static-tokens", type=int, default=None,
        help="instruction tokens (system prompt, schema, examples) paid per request",
    )  # fmt: skip
    est.add_argument("--batch-size", type=int, default=None,
                     help="events per request (default: the route's, else 16)")  # fmt: skip
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
    if args.per_day < 0 or (args.batch_size or 1) < 1 or not 0 <= args.cache_hit_rate <= 1:
        raise ConfigError("--per-day >= 0, --batch-size >= 1, 0 <= --cache-hit-rate <= 1")
    if args.sample is not None:
        try:
            content = sample_content_tokens(args.sample, args.sample_field)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--sample: {exc}") from None
    else:
        content = args.content_tokens
    static, output, batch = _route_shape(settings, args.route) if args.route else (0, 20.0, 16)
    args.static_tokens = static if args.static_tokens is None else args.static_tokens
    args.output_tokens = output if args.output_tokens is None else args.output_tokens
    args.batch_size = batch if args.batch_size is None else args.batch_size
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


def _route_shape(settings: Settings, name: str) -> tuple[int, float, int]:
    """(static input tokens per request, output tokens per event, events per request) of
    a configured route, from its handler's task as the client would send it."""
    from stream.model.batcher import batch_size, output_estimate  # noqa: PLC0415
    from stream.model.client import request_static_tokens  # noqa: PLC0415
    from stream.routes import build_routes  # noqa: PLC0415

    routes = {r.settings.name: r for r in build_routes(settings)}
    route = routes.get(name)
    if route is None:
        raise ConfigError(f"--route: no route {name!r}; configured: {', '.join(routes) or 'none'}")
    task = getattr(route.handler, "task", None)
    if not isinstance(task, Task):
        raise ConfigError(f"--route {name}: handler {route.settings.handler!r} calls no model")
    per_item = output_estimate(task)
    size = batch_size(
        settings.model.batch_max_events, settings.model.max_completion_tokens, per_item
    )
    return request_static_tokens(task, settings.model.output_mode), per_item, size


def _table(rows: list[DailyCost]) -> None:
    print(f"{'':40} {'requests':>10} {'input tok':>13} {'cached tok':>13} "
          f"{'output tok':>12} {'$/day':>9}")  # fmt: skip
    for r in rows:
        print(f"{r.label:40} {r.requests:>10,.0f} {r.input_tokens:>13,.0f} "
              f"{r.cached_tokens:>13,.0f} {r.output_tokens:>12,.0f} {r.usd:>9.2f}")  # fmt: skip
