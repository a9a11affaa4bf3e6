"""Answers already paid for: a bounded LRU with a TTL, keyed by task and content.

Identical content (after whitespace is normalised) of one task gets the same answer
without a model call. Case and punctuation are kept: "GREAT." and "great" can mean
different things to a sentiment task.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


def normalise(text: str) -> str:
    return " ".join(text.split())


def cache_key(task_id: str, text: str) -> str:
    """``task_id`` names the task and its instructions, so a prompt change misses."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(task_id.encode())
    digest.update(b"\0")
    digest.update(normalise(text).encode())
    return digest.hexdigest()


class TtlLru(Generic[V]):
    """At most ``max_entries`` values, each for at most ``ttl_s`` seconds."""

    def __init__(
        self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        found = self._items.get(key)
        if found is None or found[0] < self._clock():
            if found is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return found[1]

    def put(self, key: str, value: V) -> None:
        if self.max_entries <= 0:
            return
        self._items[key] = (self._clock() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
