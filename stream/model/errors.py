"""The model client's errors, and the one place openai's exceptions become them.

    SluicegateError
    ├── ModelError
    │   ├── ModelRateLimited      retriable; carries the server's retry-after
    │   ├── ModelTimeout          retriable
    │   ├── ModelUnavailable      retriable: 5xx, connection trouble, 409
    │   ├── ModelCircuitOpen      retriable: the breaker is open; consumption pauses
    │   ├── ModelRequestRejected  fatal: bad key, unknown model, bad schema, no quota
    │   │   └── FormatRejected    the response_format refused (output mode discovery)
    │   ├── ModelUnreachable      fatal at start-up: no answer, or the key refused (exit 3)
    │   ├── BudgetExhausted       fatal under the "stop" policy
    │   └── BudgetPaused          retriable: "pause" / "local-only" until the next day
    └── EventError (per event: the event goes to the DLQ)
        ├── ModelInputRejected    the provider refused this input (too long, policy)
        │   └── ContextExceeded   over the context window (a batch is split first)
        └── ModelOutputInvalid    the answer stayed invalid after one repair attempt
            └── ModelRefused      the model refused to answer

The SDK's own retries are off (``max_retries=0``): our limiter owns every retry, so
rate limits, backoff and the breaker see all of them.
"""

from __future__ import annotations

import re

import openai
from openai import _exceptions as sdk_errors

from schemas.errors import EventError, SluicegateError


class ModelError(SluicegateError):
    """The model endpoint did not give a usable answer."""


class ModelRateLimited(ModelError):
    retriable = True

    def __init__(
        self, message: str, retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class ModelTimeout(ModelError):
    retriable = True


class ModelUnavailable(ModelError):
    retriable = True


class ModelCircuitOpen(ModelError):
    retriable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelRequestRejected(ModelError):
    fatal = True


class ModelUnreachable(ModelError):
    """The start-up probe found no endpoint at the address, or the key was refused; the
    message names the address (never the key)."""

    fatal = True


class BudgetExhausted(ModelError):
    fatal = True


class BudgetPaused(ModelError):
    """The daily budget is spent under the "pause" or "local-only" policy: wait for the
    next UTC day (handlers with a local tier answer locally instead)."""

    retriable = True

    def __init__(self, message: str, retry_after: float, *, local_only: bool) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.local_only = local_only


class ModelInputRejected(EventError):
    stage = "model"


class ContextExceeded(ModelInputRejected):
    """The request does not fit the model's context window. ``window`` and ``prompt``
    (the server's count of the request's prompt tokens) when the message tells them;
    ``estimated_prompt`` is set by the client to its own estimate of that prompt."""

    def __init__(self, message: str, window: int | None = None, prompt: int | None = None) -> None:
        super().__init__(message)
        self.window = window
        self.prompt = prompt
        self.estimated_prompt: int | None = None


class FormatRejected(ModelRequestRejected):
    """The endpoint refused the request's ``response_format``: a fault of configuration
    (or a step of the output mode discovery), never an outage."""

    def __init__(self, message: str, mode: str) -> None:
        super().__init__(message)
        self.mode = mode


class MaxTokensRejected(FormatRejected):
    """The endpoint refused ``max_tokens``: sent no more (``model.send_max_tokens`` auto)."""


class ModelOutputInvalid(EventError):
    stage = "model"


class ModelRefused(ModelOutputInvalid):
    pass


# Codes of a 400 that concern the one input, not the configuration.
_PER_EVENT_400 = {"context_length_exceeded", "content_policy_violation", "invalid_prompt"}

# Every exception class the SDK exports, decided one by one (test_model_errors.py fails
# when a new SDK version adds one that is not listed here).
_TABLE: dict[type[openai.OpenAIError], type[SluicegateError]] = {
    openai.OpenAIError: ModelUnavailable,
    openai.APIError: ModelUnavailable,
    openai.APIStatusError: ModelUnavailable,  # refined by status in map_openai_error
    openai.APIConnectionError: ModelUnavailable,
    openai.APITimeoutError: ModelTimeout,
    openai.APIResponseValidationError: ModelOutputInvalid,
    openai.BadRequestError: ModelRequestRejected,  # refined by code in map_openai_error
    openai.AuthenticationError: ModelRequestRejected,
    openai.OAuthError: ModelRequestRejected,
    sdk_errors.SubjectTokenProviderError: ModelRequestRejected,
    openai._AmbiguousModuleClientUsageError: ModelRequestRejected,
    openai.PermissionDeniedError: ModelRequestRejected,
    openai.NotFoundError: ModelRequestRejected,
    openai.ConflictError: ModelUnavailable,
    openai.UnprocessableEntityError: ModelRequestRejected,
    openai.RateLimitError: ModelRateLimited,
    openai.InternalServerError: ModelUnavailable,
    openai.LengthFinishReasonError: ModelOutputInvalid,
    openai.ContentFilterFinishReasonError: ModelRefused,
    openai.WebSocketConnectionClosedError: ModelUnavailable,
    openai.WebSocketQueueFullError: ModelUnavailable,
}


# How servers state their context window and the prompt's size: OpenAI (and
# llama-cpp-python's server, which rewrites llama.cpp's "Requested tokens (N) exceed
# context window of M" in OpenAI's words), vLLM.
_WINDOW = re.compile(
    r"maximum context length is (\d+)|context window of (\d+)|context length of (\d+)", re.I
)
_PROMPT = re.compile(
    r"\((\d+) in the messages|Requested tokens \((\d+)\)|resulted in (\d+) tokens", re.I
)


def _first_int(pattern: re.Pattern[str], text: str) -> int | None:
    found = pattern.search(text)
    if found is None:
        return None
    return int(next(g for g in found.groups() if g is not None))


def context_exceeded(message: str, code: str | None) -> ContextExceeded | None:
    """The error as a ``ContextExceeded`` if it says the request is over the window."""
    window = _first_int(_WINDOW, message)
    if code != "context_length_exceeded" and window is None:
        return None
    return ContextExceeded(message, window, _first_int(_PROMPT, message))


def names_response_format(exc: openai.APIStatusError) -> bool:
    """A 400/422/500 whose message is about ``response_format``: the server does not
    take the output mode sent (llama-cpp-python answers ``json_schema`` with HTTP 500
    "Input should be 'text' or 'json_object'")."""
    if exc.status_code not in (400, 422, 500) or _code(exc) == "invalid_json_schema":
        return False
    text = f"{exc.message} {exc.body}".lower()
    if "invalid schema" in text:
        return False  # the format is taken; the task's schema is the fault
    return any(word in text for word in ("response_format", "json_schema", "json_object"))


def names_max_tokens(exc: openai.APIStatusError) -> bool:
    """A 400 refusing ``max_tokens`` (the OpenAI API does, for reasoning models: "Use
    'max_completion_tokens' instead"), e.g. from a proxy to it on another host."""
    if exc.status_code != 400:
        return False
    body = exc.body if isinstance(exc.body, dict) else {}
    inner = body.get("error", body)
    param = inner.get("param") if isinstance(inner, dict) else None
    return param == "max_tokens" or "'max_tokens'" in exc.message


def _code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return str(inner["code"])
    return exc.code if isinstance(getattr(exc, "code", None), str) else None


def retry_after_s(headers: object) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``retry-after`` seconds."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = get(name)
        if raw:
            try:
                return max(0.0, float(raw) * scale)
            except ValueError:
                continue
    return None


def map_openai_error(  # noqa: PLR0911 - one return per kind of answer
    exc: openai.OpenAIError, doing: str
) -> SluicegateError:
    """Translate an SDK exception met while ``doing`` something into our tree."""
    kind = next((_TABLE[c] for c in type(exc).__mro__ if c in _TABLE), ModelUnavailable)
    message = f"{doing}: {type(exc).__name__}: {exc}"
    if isinstance(exc, openai.APIStatusError):
        status, code = exc.status_code, _code(exc)
        message = f"{doing}: HTTP {status}{f' {code}' if code else ''}: {exc.message}"
        if isinstance(exc, openai.RateLimitError):
            if code == "insufficient_quota":
                return ModelRequestRejected(message + " (the account has no quota left)")
            return ModelRateLimited(message, retry_after_s(exc.response.headers), code)
        if isinstance(exc, openai.BadRequestError):
            too_long = context_exceeded(exc.message, code)
            if too_long is not None:
                too_long.args = (message,)
                return too_long
            if code in _PER_EVENT_400:
                return ModelInputRejected(message)
        if status == 500 and "validation error" in exc.message.lower():
            # A server that validates the body with pydantic answers a bad one with 500.
            return ModelRequestRejected(message + " (the server refused the request as "
                                        "malformed: check the model.* settings)")  # fmt: skip
        if type(exc) is openai.APIStatusError:
            if status == 408:
                return ModelTimeout(message)
            kind = ModelUnavailable if status >= 500 or status == 429 else ModelRequestRejected
    return kind(message)
