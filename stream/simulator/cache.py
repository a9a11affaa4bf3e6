"""The provider's prompt prefix cache, approximated.

A prompt whose first 1,024 tokens or more equal those of an earlier prompt (same model)
reports ``cached_tokens``: the longest such prefix, in 128-token steps. Tokens are taken
as 4 characters of the message contents joined in order. The cache remembers hashes of
prefix blocks (each hash covers everything before it), bounded and least-recently-used.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from stream.model.tokens import CHARS_PER_TOKEN

BLOCK_TOKENS = 128
MIN_CACHED_TOKENS = 1024
_BLOCK_CHARS = BLOCK_TOKENS * CHARS_PER_TOKEN


class PrefixCache:
    """Remembers prompt prefixes; ``lookup_and_store`` says how much of a prompt was seen."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = capacity_blocks
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        self._seen.clear()

    @staticmethod
    def _chain(model: str, text: str) -> list[bytes]:
        digest = hashlib.blake2b(model.encode(), digest_size=16).digest()
        chain = []
        for start in range(0, len(text) - _BLOCK_CHARS + 1, _BLOCK_CHARS):
            block = text[start : start + _BLOCK_CHARS].encode()
            digest = hashlib.blake2b(digest + block, digest_size=16).digest()
            chain.append(digest)
        return chain

    def lookup_and_store(self, model: str, text: str) -> int:
        """Cached tokens for this prompt (0 below 1,024), then remember its prefixes."""
        chain = self._chain(model, text)
        if len(chain) * BLOCK_TOKENS < MIN_CACHED_TOKENS:
            return 0  # too short to be cached, now or later
        hits = 0
        for digest in chain:
            if digest not in self._seen:
                break
            hits += 1
        for digest in chain:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        cached = hits * BLOCK_TOKENS
        return cached if cached >= MIN_CACHED_TOKENS else 0
