"""Dollars from tokens, the daily budget, and the cost forecast."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.cli import commands as cli
from stream.config import BudgetSettings, Prices
from stream.errors import ConfigError
from stream.model.cost import DAY_S, CostMeter, cost_usd
from stream.model.estimate import cacheable_prefix, daily_cost, sample_content_tokens

NANO = Prices(input=0.20, cached_input=0.02, output=1.25)


def test_prices_of_nano() -> None:
    """1M uncached input, 1M cached input and 1M output cost $0.20, $0.02 and $1.25;
    the flex tier costs half."""
    assert cost_usd(NANO, prompt=1e6, cached=0, completion=0) == pytest.approx(0.20)
    assert cost_usd(NANO, prompt=1e6, cached=1e6, completion=0) == pytest.approx(0.02)
    assert cost_usd(NANO, prompt=0, cached=0, completion=1e6) == pytest.approx(1.25)
    assert cost_usd(NANO, prompt=1e6, cached=0, completion=0, tier="flex") == pytest.approx(0.10)


def test_meter_tallies_per_handler_and_route() -> None:
    """Tokens and dollars add up per (handler, route) and in total."""
    meter = CostMeter(BudgetSettings())
    meter.record(handler="sentiment", route="reviews", model="gpt-5.4-nano",
                 prompt=1000, cached=0, completion=100)  # fmt: skip
    meter.record(handler="sentiment", route="reviews", model="gpt-5.4-nano",
                 prompt=1000, cached=500, completion=100)  # fmt: skip
    tally = meter.tallies[("sentiment", "reviews")]
    assert (tally.events, tally.prompt, tally.cached, tally.completion) == (2, 2000, 500, 200)
    expected = (1500 * 0.20 + 500 * 0.02 + 200 * 1.25) / 1e6
    assert tally.usd == pytest.approx(expected)
    assert meter.totals()["usd"] == pytest.approx(expected)


def test_unknown_model_price_is_a_config_error() -> None:
    """A model without a price cannot be metered, so it is refused by name."""
    with pytest.raises(ConfigError, match=r"no price for model 'gpt-9'"):
        CostMeter(BudgetSettings()).prices_for("gpt-9")


def test_daily_budget_runs_out_and_renews_at_utc_midnight() -> None:
    """The budget is spent within a UTC day and available again the next day."""
    now = [10 * DAY_S + 100.0]
    meter = CostMeter(BudgetSettings(usd_per_day=1.0, policy="stop"), clock=lambda: now[0])
    assert not meter.exhausted
    meter.record(handler="h", route="r", model="gpt-5.4-nano", prompt=0, cached=0,
                 completion=1e6)  # fmt: skip
    assert meter.exhausted
    assert meter.exhausted_under("stop")
    assert not meter.exhausted_under("pause")
    now[0] = 11 * DAY_S + 1
    assert not meter.exhausted
    assert meter.remaining_today == 1.0


def test_seed_cost_model() -> None:
    """100,000 events a day at 300 input and 20 output tokens cost $8.50 a day."""
    naive = daily_cost(NANO, label="naive", per_day=100_000, content_tokens=300, output_tokens=20)
    assert naive.usd == pytest.approx(8.50)
    assert naive.requests == 100_000


def test_batching_and_prefix_cache_cut_instruction_cost() -> None:
    """A 1,200-token static prompt is paid once per batch, and its cacheable prefix
    (1,152 tokens: 128-token steps from 1,024) at the cached price."""
    assert cacheable_prefix(1000) == 0
    assert cacheable_prefix(1200) == 1152
    shape = {"per_day": 1000, "content_tokens": 50, "output_tokens": 20, "static_tokens": 1200}
    naive = daily_cost(NANO, label="naive", **shape)  # type: ignore[arg-type]
    batched = daily_cost(NANO, label="b", batch_size=20, **shape)  # type: ignore[arg-type]
    assert batched.requests == 50
    assert batched.input_tokens == 50 * 1200 + 1000 * 50
    assert batched.cached_tokens == 50 * 1152
    instructions_per_event = {r.label: r.requests * 1200 / 1000 for r in (naive, batched)}
    assert instructions_per_event["b"] <= 0.1 * instructions_per_event["naive"]
    assert batched.usd < naive.usd


def test_sample_file_tokens(tmp_path: Path) -> None:
    """Content size comes from the text field of JSON lines, or from raw lines."""
    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "' + "a" * 40 + '", "id": 1}\n\nplain text line!\n')
    assert sample_content_tokens(path) == (10 + 4) / 2


def test_cost_estimate_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """`sluicegate cost estimate` prints the naive and the batched dollars per day."""
    code = cli.main(["cost", "estimate", "--per-day", "100000", "--content-tokens", "300",
                     "--output-tokens", "20", "--batch-size", "1",
                     "--static-tokens", "0"])  # fmt: skip
    assert code == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "one call per event" in out
    assert "8.50" in out


def test_cost_estimate_for_a_configured_route(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--route``: the handler's own prompt, schema and answer size, the configured
    batch size; an unknown route or a handler without a model is named in the error."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[[routes]]\nname = "reviews"\ninput_topics = ["r"]\noutput_topic = "o"\n'
        'handler = "sentiment"\n'
        '[[routes]]\nname = "raw"\ninput_topics = ["x"]\noutput_topic = "y"\nhandler = "echo"\n'
    )
    args = ["cost", "estimate", "-c", str(config), "--per-day", "100000",
            "--content-tokens", "300"]  # fmt: skip
    assert cli.main([*args, "--route", "reviews"]) == cli.EXIT_OK
    head = capsys.readouterr().out.splitlines()[0]
    static = int(head.split(" content + ")[1].split()[0])
    assert static > 1024  # the sentiment prompt is long enough for the prefix cache
    assert cli.main([*args, "--route", "raw"]) == cli.EXIT_CONFIG
    assert "calls no model" in capsys.readouterr().err
    assert cli.main([*args, "--route", "nope"]) == cli.EXIT_CONFIG
    assert "configured: reviews, raw" in capsys.readouterr().err
