"""The start-up probe: is there a model endpoint at the address, and does it take the key?

Without it, ``run`` against a wrong address or without a key retried connection errors
for ever. One cheap request answers both questions before any event is consumed: the
models list, or (for a server without one) a chat completion of one token. A refused key
or no answer at all stops the process (exit 3) with a message that names the address and
the settings to check, never the key. An endpoint that answers but fails (5xx, 429) is
up: the breaker and the limits deal with that while running. An endpoint that refuses
connections is asked again for ``PROBE_WAIT_S``: a model server started beside the
processor (a sidecar, a server still loading its weights) may come up a little later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import openai

from stream.config import ModelSettings
from stream.model.errors import ModelUnreachable

log = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 10.0
PROBE_WAIT_S = 15.0  # how long connections refused are tried again before exit 3


def address(base_url: str) -> str:
    """The endpoint's address without user info or query, which may hold secrets."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _refused(where: str, status: int, settings: ModelSettings) -> ModelUnreachable:
    if settings.api_key is None:
        why = "no API key is set: set model.api_key or OPENAI_API_KEY"
    else:
        why = "check model.api_key / OPENAI_API_KEY (and model.base_url)"
    return ModelUnreachable(
        f"the model endpoint at {where} refused the API key (HTTP {status}); {why}"
    )


async def probe(sdk: openai.AsyncOpenAI, settings: ModelSettings) -> None:
    """Raise ``ModelUnreachable`` unless the endpoint answers and accepts the key."""
    where = address(str(sdk.base_url))
    quick = sdk.with_options(timeout=min(PROBE_TIMEOUT_S, settings.timeout_s), max_retries=0)
    deadline = time.monotonic() + PROBE_WAIT_S
    pause = 0.25
    while True:
        try:
            await quick.models.list()
        except openai.APITimeoutError as exc:  # it took the connection: no use waiting
            raise _unreachable(where, exc) from None
        except openai.APIConnectionError as exc:
            if time.monotonic() + pause > deadline:
                raise _unreachable(where, exc) from None
            if pause == 0.25:
                log.info("model endpoint at %s does not answer yet; trying for up to %.0f s",
                         where, PROBE_WAIT_S)  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
            continue
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise _refused(where, exc.status_code, settings) from None
        except openai.APIStatusError as exc:
            if exc.status_code not in (404, 405):
                log.warning("model endpoint at %s answered HTTP %d to the probe; going on",
                            where, exc.status_code)  # fmt: skip
                return
            await _probe_chat(quick, settings, where)  # no models list here: one token
            return
        log.info("model endpoint at %s answers", where)
        return


async def _probe_chat(sdk: openai.AsyncOpenAI, settings: ModelSettings, where: str) -> None:
    messages: Any = [{"role": "user", "content": "ping"}]
    try:
        await sdk.chat.completions.create(
            model=settings.model, messages=cast("Any", messages), max_completion_tokens=1
        )
    except openai.APIConnectionError as exc:
        raise _unreachable(where, exc) from None
    except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
        raise _refused(where, exc.status_code, settings) from None
    except openai.APIStatusError as exc:
        # It answered: an unknown model or parameter is reported by the first real call.
        log.warning("model endpoint at %s answered HTTP %d to a one-token probe; going on",
                    where, exc.status_code)  # fmt: skip


def _unreachable(where: str, exc: openai.APIConnectionError) -> ModelUnreachable:
    kind = "no answer in time" if isinstance(exc, openai.APITimeoutError) else "no connection"
    return ModelUnreachable(
        f"the model endpoint at {where} cannot be reached ({kind}); check model.base_url / "
        "OPENAI_BASE_URL and the network"
    )
