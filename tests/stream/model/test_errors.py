"""openai's exceptions become ours at one boundary, each with a deliberate decision."""

from __future__ import annotations

import inspect

import httpx2
import openai
import pytest
from openai import _exceptions as sdk_errors

from schemas.errors import EventError
from stream.model import errors
from stream.model.errors import map_openai_error


def sdk_exception_classes() -> set[type[openai.OpenAIError]]:
    found = set()
    for module in (openai, sdk_errors):
        for value in list(vars(module).values()):
            if inspect.isclass(value) and issubclass(value, openai.OpenAIError):
                found.add(value)
    return found


def test_every_sdk_exception_class_is_decided() -> None:
    """Each exception class the SDK defines has its own entry in the mapping table, so a
    new SDK version with a new class fails here until someone decides what it means."""
    missing = sorted(c.__name__ for c in sdk_exception_classes() if c not in errors._TABLE)
    assert missing == []


def status_error(
    cls: type[openai.APIStatusError], status: int, code: str | None = None, **headers: str
) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://sim/v1/chat/completions")
    response = httpx2.Response(status, headers=headers, request=request)
    body = {"error": {"message": "boom", "type": "x", "code": code}}
    return cls("boom", response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "expected", "retriable", "fatal"),
    [
        (status_error(openai.RateLimitError, 429, **{"retry-after-ms": "1500"}),
         errors.ModelRateLimited, True, False),
        (status_error(openai.RateLimitError, 429, "insufficient_quota"),
         errors.ModelRequestRejected, False, True),
        (status_error(openai.InternalServerError, 503), errors.ModelUnavailable, True, False),
        (status_error(openai.ConflictError, 409), errors.ModelUnavailable, True, False),
        (status_error(openai.AuthenticationError, 401), errors.ModelRequestRejected, False, True),
        (status_error(openai.NotFoundError, 404), errors.ModelRequestRejected, False, True),
        (status_error(openai.BadRequestError, 400, "context_length_exceeded"),
         errors.ContextExceeded, False, False),
        (status_error(openai.BadRequestError, 400, "content_policy_violation"),
         errors.ModelInputRejected, False, False),
        (status_error(openai.BadRequestError, 400, "invalid_json_schema"),
         errors.ModelRequestRejected, False, True),
        (status_error(openai.APIStatusError, 408), errors.ModelTimeout, True, False),
        (status_error(openai.APIStatusError, 502), errors.ModelUnavailable, True, False),
        (openai.APITimeoutError(httpx2.Request("POST", "http://sim")), errors.ModelTimeout,
         True, False),
        (openai.APIConnectionError(request=httpx2.Request("POST", "http://sim")),
         errors.ModelUnavailable, True, False),
    ],
)  # fmt: skip
def test_decisions(
    exc: openai.OpenAIError, expected: type[Exception], retriable: bool, fatal: bool
) -> None:
    """Rate limits and outages are retriable, configuration faults are fatal, a refused
    input is a per-event fault (DLQ)."""
    mapped = map_openai_error(exc, "calling the model")
    assert type(mapped) is expected
    assert mapped.retriable is retriable
    assert mapped.fatal is fatal
    assert str(mapped).startswith("calling the model: ")
    assert isinstance(mapped, EventError) == issubclass(expected, errors.ModelInputRejected)


def test_retry_after_is_kept() -> None:
    """The server's retry-after-ms (or retry-after) travels with the error."""
    mapped = map_openai_error(
        status_error(openai.RateLimitError, 429, **{"retry-after": "7"}), "calling"
    )
    assert isinstance(mapped, errors.ModelRateLimited)
    assert mapped.retry_after == 7.0
