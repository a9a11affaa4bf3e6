"""One place that decides what is secret and masks it, for everything the process writes.

Three ways a secret is recognised, each cheap enough for every log line:

* by **key**: a setting or librdkafka option whose name can hold one (``*.password``,
  ``*.secret``, ``sasl.*`` but the mechanism, ``ssl.key.*``, ``api_key``, ``token``,
  ``Authorization``...): ``is_secret_key`` and ``mask_mapping``;
* by **position** in text: URL userinfo (``https://user:pw@host``), ``Bearer ...``,
  ``Authorization: ...``, ``password=...`` pairs, and provider API keys quoted in error
  messages (``Incorrect API key provided: sk-...``): ``mask_text``;
* by **value**: every secret the configuration holds is registered at load time
  (``register``), so it is masked wherever it appears, even in a message nobody foresaw.

``SecretMaskingFilter`` applies ``mask_text`` to every log record (the HTTP client's
DEBUG lines included) once it is on a handler; ``mask_text`` is also what error
messages, DLQ records and alerts pass through.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "**********"

# Parts of a key name that mean its value is secret.
_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential")
_NOT_SECRET = frozenset({"sasl.mechanism", "sasl.mechanisms", "sasl_mechanism"})

# A secret shorter than this is not registered by value: masking every "a" or "1" in
# every log line would garble it and protect nothing (such a secret is no secret).
_MIN_REGISTERED = 6

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # URL userinfo: scheme://user:password@host -> scheme://**********@host
    (re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]+@"), rf"\g<scheme>{MASK}@"),
    # Authorization headers and bearer tokens, in any case.
    (
        re.compile(
            r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',;]+"
        ),
        rf"\g<1>{MASK}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{4,}"), f"Bearer {MASK}"),
    # Provider API keys as they appear in error bodies (OpenAI sk-..., sk-proj-...).
    (re.compile(r"\bsk-[A-Za-z0-9_*-]{6,}"), f"sk-{MASK}"),
    # key=value / "key": "value" pairs whose key names a secret (librdkafka dumps,
    # reprs of dicts, query strings). The key is a whole name; error codes that name a
    # secret without holding one (``invalid_api_key: Incorrect API key...``) are not keys.
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9_.-])(?!(?:invalid|missing|incorrect|expired|revoked)_)"
            r"(?P<key>[\"']?[A-Za-z0-9_.-]*(?:password|passwd|secret|api[_-]?key|token|"
            r"sasl\.(?!mechanism|username)[A-Za-z.]+|ssl\.key\.(?!location)[A-Za-z.]+)[\"']?"
            r"\s*[:=]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;&}'\"]+)"
        ),
        rf"\g<key>'{MASK}'",
    ),
)

_lock = threading.Lock()
_registered: tuple[str, ...] = ()


def register(*values: str | None) -> None:
    """Remember secret values so that ``mask_text`` hides them wherever they appear."""
    global _registered  # noqa: PLW0603 - one process-wide set, read by every log line
    new = {v for v in values if v and len(v) >= _MIN_REGISTERED}
    if not new:
        return
    with _lock:
        # Longest first: a secret that contains another is replaced whole.
        _registered = tuple(sorted(set(_registered) | new, key=len, reverse=True))


def is_secret_key(key: str) -> bool:
    """True if a value stored under ``key`` (a setting, a librdkafka option, a header
    name) can be a secret."""
    name = key.lower().replace("-", "_")
    if name in _NOT_SECRET:
        return False
    if name.startswith(("sasl.", "sasl_", "ssl.key.", "ssl_key_", "ssl.keystore.")):
        # A file's path or the user's name is no secret; every other value here may be.
        return not name.endswith(("location", "username"))
    if name in ("authorization", "proxy_authorization", "x_api_key", "api_key", "cookie"):
        return True
    # "tokens" counts (max_completion_tokens, batch_max_tokens) are sizes, not secrets.
    return any(word in name for word in _SECRET_WORDS if word != "token") or bool(
        _TOKEN.search(name)
    )


_TOKEN = re.compile(r"token(?!s)")


def mask_url(url: str) -> str:
    """``url`` without the password (and user) of its userinfo, nor secret query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    return mask_text(urlunsplit(parts._replace(netloc=netloc)))


def mask_text(text: str) -> str:
    """``text`` with every secret it may hold replaced by ``MASK``."""
    for secret in _registered:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_value(key: str, value: Any) -> Any:
    """``value`` masked if ``key`` names a secret; strings masked by content anyway."""
    if value is None:
        return None
    if is_secret_key(key):
        return MASK
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list | tuple):
        return [mask_value(key, item) for item in value]
    if isinstance(value, str):
        return mask_url(value) if "://" in value else mask_text(value)
    return value


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` (nested mappings and lists too) with secret values masked."""
    return {key: mask_value(str(key), value) for key, value in data.items()}


class SecretMaskingFilter(logging.Filter):
    """Masks secrets in a record's message, exception text and extra string fields.

    On a handler it sees every record that handler writes, whichever logger made it
    (the HTTP client's DEBUG lines carry URLs and headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not hide the line
            message = str(record.msg)
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = mask_text(formatted)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        for name, value in list(vars(record).items()):
            if name in _RECORD_FIELDS:
                continue
            if isinstance(value, str):
                setattr(record, name, mask_value(name, value))
        return True


_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
