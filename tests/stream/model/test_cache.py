"""The response cache: bounded, expiring, keyed by task and normalised content."""

from __future__ import annotations

from stream.model.cache import TtlLru, cache_key


def test_cache_expires_and_evicts() -> None:
    """Entries expire after the TTL, and the oldest go when the cache is full."""
    now = [0.0]
    cache: TtlLru[str] = TtlLru(2, ttl_s=10, clock=lambda: now[0])
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"
    cache.put("c", "C")
    assert cache.get("b") is None
    now[0] = 11
    assert cache.get("a") is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_keys_ignore_whitespace_but_not_case_or_task() -> None:
    """Whitespace is normalised; case and the task are part of the key."""
    assert cache_key("t", " great  product\n") == cache_key("t", "great product")
    assert cache_key("t", "GREAT") != cache_key("t", "great")
    assert cache_key("t1", "great") != cache_key("t2", "great")
