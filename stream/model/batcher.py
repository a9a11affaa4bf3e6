"""Micro-batching: concurrent asks of one task share a request.

Handlers ask for one event at a time; the batcher holds each ask for at most
``max_wait_s`` so that up to ``max_events`` events (and ``max_tokens`` of their text)
of the same task go out in one request. The static prompt is paid once per batch
instead of once per event. Identical content is answered from the cache, or shares the
request already in flight for it. The usage of a batch is shared out evenly, so every
event carries its part of the tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from pydantic import BaseModel

from handlers.model import Reply, Task
from stream.model.cache import TtlLru, cache_key
from stream.model.client import ModelClient
from stream.model.tokens import estimate_tokens


@dataclass
class _Pending:
    task: Task
    events: list[tuple[str, str, asyncio.Future[Reply]]] = field(default_factory=list)
    tokens: int = 0
    timer: asyncio.TimerHandle | None = None


def task_id(task: Task) -> str:
    """Asks with the same id may share a request and a cache entry."""
    digest = hashlib.blake2b(task.instructions.encode(), digest_size=8).hexdigest()
    return f"{task.name}/{task.model or ''}/{task.output.__qualname__}/{digest}"


def _retrieve(future: asyncio.Future[Reply]) -> None:
    # Mark an exception as seen even if the asker was cancelled meanwhile.
    if not future.cancelled():
        future.exception()


class Batcher:
    """Coalesces single-event asks into batch requests to one ``ModelClient``."""

    def __init__(
        self,
        client: ModelClient,
        *,
        max_events: int = 16,
        max_tokens: int = 6000,
        max_wait_s: float = 0.005,
        cache: TtlLru[BaseModel] | None = None,
    ) -> None:
        self.client = client
        self.max_events = max_events
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self.cache = cache
        self._pending: dict[str, _Pending] = {}
        self._inflight: dict[str, asyncio.Future[Reply]] = {}
        self._requests: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.batched_events = 0

    async def ask(self, task: Task, text: str, *, batch: bool = True) -> Reply:
        """The answer for one event; per-event faults and outages are raised."""
        tid = task_id(task)
        key = cache_key(tid, text)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return Reply(hit, "cache", task.model or self.client.settings.model)
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._inflight[key] = future
        future.add_done_callback(lambda _f: self._inflight.pop(key, None))
        self._enqueue(tid, task, key, text, future, flush_now=not batch)
        return await asyncio.shield(future)

    def _enqueue(
        self,
        tid: str,
        task: Task,
        key: str,
        text: str,
        future: asyncio.Future[Reply],
        *,
        flush_now: bool,
    ) -> None:
        tokens = estimate_tokens(text)
        pending = self._pending.get(tid)
        if pending is not None and pending.tokens + tokens > self.max_tokens:
            self._flush(tid)
            pending = None
        if pending is None:
            pending = self._pending[tid] = _Pending(task)
        pending.events.append((key, text, future))
        pending.tokens += tokens
        if flush_now or len(pending.events) >= self.max_events:
            self._flush(tid)
        elif pending.timer is None:
            loop = asyncio.get_running_loop()
            pending.timer = loop.call_later(self.max_wait_s, self._flush, tid)

    def _flush(self, tid: str) -> None:
        pending = self._pending.pop(tid, None)
        if pending is None or not pending.events:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        request = asyncio.create_task(self._request(pending.task, pending.events))
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)

    async def _request(
        self, task: Task, events: list[tuple[str, str, asyncio.Future[Reply]]]
    ) -> None:
        self.batches += 1
        self.batched_events += len(events)
        by_id = {str(i): (key, future) for i, (key, _, future) in enumerate(events)}
        try:
            answers = await self.client.ask(
                task, [(str(i), t) for i, (_, t, _) in enumerate(events)]
            )
        except asyncio.CancelledError:
            for _, future in by_id.values():
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - not swallowed: every asker receives it
            for _, future in by_id.values():
                if not future.done():
                    future.set_exception(exc)
            return
        share = 1 / len(events)
        usage = answers.usage
        model = task.model or self.client.settings.model
        for eid, (key, future) in by_id.items():
            if future.done():
                continue
            output = answers.outputs.get(eid)
            if output is None:
                future.set_exception(answers.errors[eid])
                continue
            if self.cache is not None:
                self.cache.put(key, output)
            future.set_result(
                Reply(output, "model", model, usage.prompt * share, usage.cached * share,
                      usage.completion * share, tier=usage.tier)
            )  # fmt: skip

    async def aclose(self) -> None:
        """Cancel requests still running; their askers see the cancellation."""
        for tid in list(self._pending):
            self._flush(tid)
        for request in list(self._requests):
            request.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
