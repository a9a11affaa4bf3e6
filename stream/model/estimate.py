"""Dollars per day before anything runs: the shape of a route's traffic, priced.

Per event: content tokens (measured on a sample file or given), output tokens, and the
static prompt (instructions, schema, examples) paid once per request, which is why
batching and the cache matter. The provider caches a static prefix of 1,024 tokens or
more in 128-token steps; cached tokens are billed at the cached price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import orjson

from stream.config import Prices
from stream.model.cost import cost_usd
from stream.model.tokens import estimate_tokens

PREFIX_CACHE_MIN = 1024
PREFIX_CACHE_STEP = 128
ID_TOKENS = 6  # `{"id": "12", ...}` overhead per item of a batched answer


def cacheable_prefix(static_tokens: int) -> int:
    if static_tokens < PREFIX_CACHE_MIN:
        return 0
    return static_tokens // PREFIX_CACHE_STEP * PREFIX_CACHE_STEP


@dataclass(frozen=True)
class DailyCost:
    label: str
    requests: float
    input_tokens: float
    cached_tokens: float
    output_tokens: float
    usd: float


def daily_cost(
    prices: Prices,
    *,
    label: str,
    per_day: int,
    content_tokens: float,
    output_tokens: float,
    static_tokens: int = 0,
    batch_size: int = 1,
    cache_hit_rate: float = 0.0,
    tier: str = "default",
) -> DailyCost:
    """Tokens and dollars for ``per_day`` events under the given batching and caching."""
    to_model = per_day * (1 - cache_hit_rate)
    requests = math.ceil(to_model / batch_size) if to_model else 0
    item_overhead = ID_TOKENS if batch_size > 1 else 0
    input_tokens = requests * static_tokens + to_model * content_tokens
    cached = requests * cacheable_prefix(static_tokens)
    output = to_model * (output_tokens + item_overhead)
    usd = cost_usd(prices, prompt=input_tokens, cached=cached, completion=output, tier=tier)
    return DailyCost(label, requests, input_tokens, cached, output, usd)


def sample_content_tokens(path: Path, field: str = "text") -> float:
    """Mean tokens per event of a sample file: JSON lines (their ``field``) or text lines."""
    sizes = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        text = line.decode("utf-8", errors="replace")
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get(field), str):
            text = parsed[field]
        sizes.append(estimate_tokens(text))
    if not sizes:
        raise ValueError(f"{path} holds no events (one per line)")
    return sum(sizes) / len(sizes)
