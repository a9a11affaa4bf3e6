"""``sluicegate cost estimate``: dollars per day for a traffic shape, naive vs batched."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from handlers.model import Task
from stream.config import Prices, Settings, load
from stream.errors import ConfigError
from stream.model.cost import cost_usd
from stream.model.estimate import DailyCost, daily_cost, sample_content_tokens

DAYS_PER_MONTH = 30
# Without --route or --static-tokens, the instructions priced are those of this
# built-in handler as the client sends them: a request never goes without them, and
# pricing it at 0 made batching look dearer than one call per event.
DEFAULT_STATIC_HANDLER = "sentiment"


def add_cost_commands(sub: Any) -> None:
    cost = sub.add_parser("cost", help="predict what the model will cost")
    actions = cost.add_subparsers(dest="cost_command", required=True, metavar="ACTION")
    est = actions.add_parser(
        "estimate",
        help="dollars per day for a daily volume: one call per event vs batched and cached",
    )
    est.add_argument("-c", "--config", type=Path, default=None, help="config (for prices)")
    volume = est.add_mutually_exclusive_group(required=True)
    volume.add_argument("--per-day", type=int, help="events per day")
    volume.add_argument("--per-month", type=int,
                        help=f"events per month (a {DAYS_PER_MONTH}-day month)")  # fmt: skip
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
        help="instruction tokens (system prompt, schema, examples) paid per request "
        "(default: the route's, else the built-in sentiment handler's, ~1,400)",
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
    per_day = args.per_day if args.per_day is not None else args.per_month / DAYS_PER_MONTH
    if per_day < 0 or (args.batch_size or 1) < 1 or not 0 <= args.cache_hit_rate <= 1:
        raise ConfigError(
            "--per-day/--per-month >= 0, --batch-size >= 1, 0 <= --cache-hit-rate <= 1"
        )
    if args.sample is not None:
        try:
            content = sample_content_tokens(args.sample, args.sample_field)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--sample: {exc}") from None
    else:
        content = args.content_tokens
    if args.route:
        static, output, batch = _route_shape(settings, args.route)
    else:
        static, output, batch = _default_static(settings), 20.0, 16
    args.static_tokens = static if args.static_tokens is None else args.static_tokens
    args.output_tokens = output if args.output_tokens is None else args.output_tokens
    args.batch_size = batch if args.batch_size is None else args.batch_size
    shape = {"per_day": round(per_day), "content_tokens": content,
             "output_tokens": args.output_tokens, "static_tokens": args.static_tokens}  # fmt: skip
    rows = [
        daily_cost(prices, label="one call per event", **shape),
        daily_cost(prices, label=f"batches of {args.batch_size}, cache {args.cache_hit_rate:.0%}"
                   f"{', flex' if args.tier == 'flex' else ''}", batch_size=args.batch_size,
                   cache_hit_rate=args.cache_hit_rate, tier=args.tier, **shape),
    ]  # fmt: skip
    print(
        f"{model}: ${prices.input}/M input, ${prices.cached_input}/M cached, "
        f"${prices.output}/M output; {round(per_day):,} events/day, {content:.0f} content + "
        f"{args.static_tokens} static input tokens, {args.output_tokens:.0f} output tokens"
    )
    _table(rows, prices, args.tier, monthly=args.per_month is not None)
    return 0


def _default_static(settings: Settings) -> int:
    """The static tokens of the built-in sentiment handler's requests, as sent."""
    from handlers.base import HandlerContext  # noqa: PLC0415
    from handlers.registry import HANDLERS  # noqa: PLC0415
    from stream.model.client import request_static_tokens  # noqa: PLC0415

    handler = HANDLERS[DEFAULT_STATIC_HANDLER].from_options({}, HandlerContext("estimate"))
    task = getattr(handler, "task", None)
    if not isinstance(task, Task):  # pragma: no cover - the sentiment handler has one
        raise ConfigError(f"handler {DEFAULT_STATIC_HANDLER!r} has no model task")
    return request_static_tokens(task, settings.model.output_mode)


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


def _table(rows: list[DailyCost], prices: Prices, tier: str, *, monthly: bool) -> None:
    """One line per way of calling: tokens, then dollars for input (cached share
    included) and output apart, as the provider bills them, and their sum."""
    month = f" {'$/month':>10}" if monthly else ""
    print(f"{'':40} {'requests':>10} {'input tok':>13} {'cached tok':>13} "
          f"{'output tok':>12} {'input $':>9} {'output $':>9} {'$/day':>9}{month}")  # fmt: skip
    for r in rows:
        usd_in = cost_usd(prices, prompt=r.input_tokens, cached=r.cached_tokens, completion=0,
                          tier=tier)  # fmt: skip
        usd_out = cost_usd(prices, prompt=0, cached=0, completion=r.output_tokens, tier=tier)
        per_month = f" {r.usd * DAYS_PER_MONTH:>10.2f}" if monthly else ""
        print(f"{r.label:40} {r.requests:>10,.0f} {r.input_tokens:>13,.0f} "
              f"{r.cached_tokens:>13,.0f} {r.output_tokens:>12,.0f} {usd_in:>9.2f} "
              f"{usd_out:>9.2f} {r.usd:>9.2f}{per_month}")  # fmt: skip
