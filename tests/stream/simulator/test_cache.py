"""The prefix cache: cached_tokens for a repeated long prefix, in 128-token steps."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from stream.simulator.cache import PrefixCache

LONG_SYSTEM = "".join(f"Rule {i}: label the event carefully and briefly. " for i in range(200))


async def _cached(client: AsyncOpenAI, system: str, user: str) -> int:
    completion = await client.chat.completions.create(
        model="gpt-5.4-nano",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    return completion.usage.prompt_tokens_details.cached_tokens or 0


@pytest.mark.asyncio
async def test_second_long_prompt_is_cached_in_128_token_steps(client: AsyncOpenAI) -> None:
    """A long shared prefix is cached from the second call on; short prompts never are."""
    assert len(LONG_SYSTEM) // 4 > 2048
    first = await _cached(client, LONG_SYSTEM, "event one")
    second = await _cached(client, LONG_SYSTEM, "event two, a different one")
    assert first == 0
    assert second >= 1024
    assert second % 128 == 0
    assert second <= len(LONG_SYSTEM) // 4
    assert await _cached(client, "short", "hi") == 0
    assert await _cached(client, "short", "hi") == 0


def test_longest_seen_prefix_counts() -> None:
    """cached_tokens is the longest prefix seen before, whole 128-token blocks only."""
    cache = PrefixCache(capacity_blocks=1000)
    base = "a" * (4 * 1024) + "b" * (4 * 512)
    assert cache.lookup_and_store("m", base) == 0
    assert cache.lookup_and_store("m", base + "tail") == 1536
    assert cache.lookup_and_store("m", base[: 4 * 1100] + "x" * 4000) == 1024
    assert cache.lookup_and_store("other-model", base) == 0
    assert cache.lookup_and_store("m", "a" * (4 * 1000)) == 0  # below 1,024 tokens


def test_cache_is_bounded() -> None:
    """The cache keeps at most its capacity in blocks, forgetting the oldest first."""
    cache = PrefixCache(capacity_blocks=10)
    cache.lookup_and_store("m", "a" * (4 * 1280))
    cache.lookup_and_store("m", "b" * (4 * 1280))
    assert len(cache) == 10
    assert cache.lookup_and_store("m", "a" * (4 * 1280)) == 0
