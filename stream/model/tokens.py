"""Token estimates made before a call, for rate limits, batching and cost forecasts.

No tokenizer is downloaded at run time: about four characters of English per token is
the provider's own rule of thumb. Estimates are corrected with each response's ``usage``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

CHARS_PER_TOKEN = 4
# Chat formatting adds a few tokens per message (role markers, separators).
TOKENS_PER_MESSAGE = 4
TOKENS_PER_REPLY = 3


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``: ceil(characters / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_messages(messages: Iterable[Mapping[str, object]]) -> int:
    """Prompt tokens of a chat request's messages (string contents only)."""
    total = TOKENS_PER_REPLY
    for message in messages:
        content = message.get("content")
        total += TOKENS_PER_MESSAGE + (estimate_tokens(content) if isinstance(content, str) else 0)
    return total
