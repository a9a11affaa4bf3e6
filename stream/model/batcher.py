"""Micro-batching: concurrent asks of one task share a request.

Handlers ask for one event at a time; the batcher holds each ask for at most
``max_wait_s`` so that up to ``max_events`` events (and ``max_tokens`` of their text) of
the same task go out in one request, and longer while the rate budget would hold the
request back anyway. The window closes early once waiting no longer adds events: no new
ask came for ``idle_s`` (the events of one consumer poll arrive together), and the budget
would let the request go now. While a request of the task already waits for the rate
budget, the asks behind it wait unbatched: the next batch is made when that request is
admitted, at the size the answers seen by then allow (a backlog otherwise went out in
batches cut at the size first guessed, before any answer was known, for minutes).
The static prompt is paid once per batch instead of once per event. Identical content
is answered from the cache, or shares the request already in flight for it. The usage
of a batch is shared out evenly, so every event carries its part of the tokens.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from pydantic import BaseModel

from handlers.model import Reply, Task
from stream.model.cache import TtlLru, cache_key
from stream.model.client import Answers, ModelClient, strict_schema
from stream.model.errors import ModelOutputInvalid
from stream.model.tokens import estimate_tokens

# While the rate budget holds requests back, a waiting batch looks again this often.
MAX_HOLD_S = 0.25


@dataclass(frozen=True)
class Spent:
    """One event's share of what its request(s) cost, answered or not."""

    model: str
    prompt: float
    cached: float
    completion: float
    calls: float
    tier: str


# Meters an event's share and says what it cost in dollars: called once per event of
# every request that reported usage, whether the event was answered or not.
Charge = Callable[[Spent], float]


@dataclass(eq=False)
class _Ask:
    key: str
    text: str
    future: asyncio.Future[Reply]
    charge: Charge | None
    tid: str
    # The askers' tasks awaiting this answer (the first and those sharing it).
    waiting: set[asyncio.Task[Any]] = field(default_factory=set)
    sent: bool = False  # the rate budget admitted its request: it is on its way


@dataclass
class _Pending:
    """The asks of one task not yet in a request: the next batch, and while a request
    of the task waits for the budget, those behind it."""

    task: Task
    events: list[_Ask] = field(default_factory=list)
    tokens: int = 0  # estimated tokens of all their texts
    timer: asyncio.TimerHandle | None = None
    opened: float = 0.0  # loop time of its first ask
    arrived: int = 0  # asks added so far
    seen: int = 0  # asks added when the timer last looked


@cache
def _schema_digest(output: type[BaseModel]) -> str:
    schema = json.dumps(strict_schema(output), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()


def task_id(task: Task) -> str:
    """Asks with the same id may share a request and a cache entry: the same name,
    model, instructions and output schema (two routes may declare outputs of the same
    class name with different fields, so the class name alone is not enough)."""
    digest = hashlib.blake2b(task.instructions.encode(), digest_size=8).hexdigest()
    schema = _schema_digest(task.output)
    return f"{task.name}/{task.model or ''}/{task.output.__qualname__}/{digest}/{schema}"


def _leaves(schema: dict[str, Any], root: dict[str, Any]) -> int:
    """Scalar fields in a JSON schema (arrays count as two): the size of one answer."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = root.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {})
    if "properties" in schema:
        return sum(_leaves(sub, root) for sub in schema["properties"].values())
    if "anyOf" in schema:
        return max(_leaves(sub, root) for sub in schema["anyOf"])
    if schema.get("type") == "array":
        return 2 * _leaves(schema.get("items", {}), root)
    return 1


def output_estimate(task: Task) -> float:
    """Completion tokens one item of the task's answer takes, before any is seen: about
    ten per scalar field of an item (its key, its value, the punctuation). The schema is
    the batch's, whose ``results`` array counts its item twice."""
    schema = strict_schema(task.output)
    return 5.0 * _leaves(schema, schema) + 8


def batch_size(max_events: int, max_completion_tokens: int, per_item: float) -> int:
    """Events per request whose answers fit in 80% of the completion budget."""
    room = 0.8 * max_completion_tokens
    return max(1, min(max_events, int(room // max(per_item, 1.0))))


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
        idle_s: float = 0.001,
        cache: TtlLru[BaseModel] | None = None,
    ) -> None:
        self.client = client
        self.max_events = max_events
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self.idle_s = idle_s
        self.cache = cache
        self._pending: dict[str, _Pending] = {}
        self._inflight: dict[str, _Ask] = {}
        self._requests: set[asyncio.Task[None]] = set()
        # Requests per task made but not yet admitted by the rate budget (at most one).
        self._unadmitted: dict[str, int] = {}
        self.batches = 0
        self.batched_events = 0
        # Completion tokens per answered item, per task: learned from each batch's usage,
        # so a batch never asks for more output than one request may return.
        self._per_item: dict[str, float] = {}

    async def ask(
        self, task: Task, text: str, *, batch: bool = True, charge: Charge | None = None
    ) -> Reply:
        """The answer for one event; per-event faults and outages are raised. ``charge``
        meters this event's share of its request, also when the answer fails; a reply
        from the cache or from a request already in flight costs nothing."""
        tid = task_id(task)
        key = cache_key(tid, text)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return Reply(hit, "cache", task.model or self.client.settings.model)
        shared = self._inflight.get(key)
        if shared is not None:
            # The request is billed to the ask that made it: this one costs nothing.
            reply = await self._wait(shared)
            return replace(reply, source="cache", prompt_tokens=0.0, cached_tokens=0.0,
                           completion_tokens=0.0, calls=0.0, usd=0.0)  # fmt: skip
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        ask = _Ask(key, text, future, charge, tid)
        self._inflight[key] = ask
        future.add_done_callback(lambda _f: self._forget(ask))
        self._enqueue(tid, task, ask, flush_now=not batch)
        return await self._wait(ask)

    async def _wait(self, ask: _Ask) -> Reply:
        """Await the answer as one of its askers. The last asker to be cancelled before
        the request is sent takes the event out of its batch (the others stay)."""
        me = asyncio.current_task()
        if me is not None:
            ask.waiting.add(me)
        try:
            return await asyncio.shield(ask.future)
        except asyncio.CancelledError:
            if me is not None:
                ask.waiting.discard(me)
            if not ask.waiting and not ask.sent:
                self._give_up(ask)
            raise
        finally:
            if me is not None:
                ask.waiting.discard(me)

    def _forget(self, ask: _Ask) -> None:
        if self._inflight.get(ask.key) is ask:
            del self._inflight[ask.key]

    def _give_up(self, ask: _Ask) -> None:
        """Nobody waits for this unsent event any more: out of its batch, at no cost."""
        self._forget(ask)  # now, not at the done callback: a new ask must not share it
        pending = self._pending.get(ask.tid)
        if pending is not None and ask in pending.events:
            pending.events.remove(ask)
            pending.tokens -= estimate_tokens(ask.text)
            if not pending.events:
                if pending.timer is not None:
                    pending.timer.cancel()
                del self._pending[ask.tid]
        # In a request waiting for budget, its admit callback now leaves it out.
        ask.future.cancel()

    def unsent_tasks(self) -> set[asyncio.Task[Any]]:
        """The askers whose events wait for the batch window or the rate budget and are
        not in a sent request. Cancelling one (e.g. at a revoke of its partition) takes
        its event out of its batch cleanly: nothing is sent or billed for it, and the
        rest of the batch goes on unharmed. Events already sent are not listed."""
        tasks: set[asyncio.Task[Any]] = set()
        for ask in self._inflight.values():
            if not ask.sent and not ask.future.done():
                tasks |= ask.waiting
        return tasks

    def _enqueue(self, tid: str, task: Task, ask: _Ask, *, flush_now: bool) -> None:
        if flush_now:  # batching off for this ask: a request of its own, at once
            self._send(tid, task, [ask], admitted_counts=False)
            return
        loop = asyncio.get_running_loop()
        pending = self._pending.get(tid)
        if pending is None:
            pending = self._pending[tid] = _Pending(task, opened=loop.time(), seen=1)
        pending.events.append(ask)
        pending.tokens += estimate_tokens(ask.text)
        pending.arrived += 1
        self._kick(tid)

    def _full(self, tid: str, pending: _Pending) -> bool:
        """The pending asks make at least one whole batch (by events or by tokens)."""
        if len(pending.events) >= self._batch_limit(tid, pending.task):
            return True
        return len(pending.events) > 1 and pending.tokens > self.max_tokens

    def _kick(self, tid: str) -> None:
        """Send whole batches while no request of the task waits for the budget; else
        (and for a part batch) let the window's timer decide."""
        pending = self._pending.get(tid)
        while pending is not None and not self._unadmitted.get(tid) and self._full(tid, pending):
            self._flush(tid)
            pending = self._pending.get(tid)
        if pending is not None and pending.timer is None and not self._unadmitted.get(tid):
            loop = asyncio.get_running_loop()
            first = self.idle_s if 0 < self.idle_s < self.max_wait_s else self.max_wait_s
            left = pending.opened + self.max_wait_s - loop.time()
            pending.timer = loop.call_later(max(0.0, min(first, left)), self._due, tid)

    def _due(self, tid: str) -> None:
        """The batch's wait may be over. While asks keep arriving (one in the last
        ``idle_s``), it waits on, up to ``max_wait_s``. If the rate budget would hold its
        request back anyway, let the batch keep growing until the budget allows a request
        (or the batch is full): a steady stream under a low request limit then sends full
        batches instead of queueing part-empty ones behind the budget."""
        pending = self._pending.get(tid)
        if pending is None:
            return
        pending.timer = None
        if self._unadmitted.get(tid):
            return  # the waiting request's admission makes the next batch
        loop = asyncio.get_running_loop()
        grew, pending.seen = pending.arrived > pending.seen, pending.arrived
        left = pending.opened + self.max_wait_s - loop.time()
        if grew and left > 0 and self.idle_s > 0:
            pending.timer = loop.call_later(min(self.idle_s, left), self._due, tid)
            return
        budget = self.client.budget
        # Requests already queued for the budget go first: this one would wait too.
        wait = budget.wait_for(0) or (MAX_HOLD_S if budget.queued else 0.0)
        if wait > 0:
            pending.timer = loop.call_later(min(wait, MAX_HOLD_S), self._due, tid)
            return
        self._flush(tid)
        self._kick(tid)

    def _batch_limit(self, tid: str, task: Task) -> int:
        """Events per request: ``max_events``, fewer when their answers would not fit in
        the request's completion budget (a cut-off answer costs a retry per item)."""
        per_item = self._per_item.get(tid)
        if per_item is None:
            per_item = self._per_item[tid] = output_estimate(task)
        fits = batch_size(self.max_events, self.client.settings.max_completion_tokens, per_item)
        return min(fits, self.client.batch_limit(task))

    def _flush(self, tid: str) -> None:
        """One batch off the front of the task's pending asks, as a request; the rest
        (asks beyond the batch) stay pending."""
        pending = self._pending.get(tid)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        limit = self._batch_limit(tid, pending.task)
        batch: list[_Ask] = []
        tokens = 0
        for ask in pending.events:
            size = estimate_tokens(ask.text)
            if batch and (len(batch) >= limit or tokens + size > self.max_tokens):
                break
            batch.append(ask)
            tokens += size
        del pending.events[: len(batch)]
        pending.tokens -= tokens
        if pending.events:
            loop = asyncio.get_running_loop()
            pending.opened, pending.seen = loop.time(), pending.arrived
        else:
            del self._pending[tid]
        if batch:
            self._send(tid, pending.task, batch, admitted_counts=True)

    def _send(self, tid: str, task: Task, events: list[_Ask], *, admitted_counts: bool) -> None:
        # A context of its own: the request serves the whole batch, so what it logs must
        # not carry the fields of the event whose ask happened to start the batch.
        if admitted_counts:
            self._unadmitted[tid] = self._unadmitted.get(tid, 0) + 1
        request = asyncio.create_task(
            self._request(tid, task, events, counted=admitted_counts),
            context=contextvars.Context(),
        )
        self._requests.add(request)
        request.add_done_callback(self._requests.discard)

    def _admitted(self, tid: str) -> None:
        """A request of the task left the budget's queue (or never reached it): the
        asks behind it may make the next batch."""
        left = self._unadmitted.get(tid, 0) - 1
        if left > 0:
            self._unadmitted[tid] = left
        else:
            self._unadmitted.pop(tid, None)
        self._kick(tid)

    async def _request(self, tid: str, task: Task, events: list[_Ask], *, counted: bool) -> None:
        self.batches += 1
        self.batched_events += len(events)
        by_id = {str(i): ask for i, ask in enumerate(events)}
        waiting = [counted]  # not yet admitted, and counted in _unadmitted

        def admit(ids: list[str]) -> list[str]:
            # The budget admitted the request: the events still wanted are sent now.
            kept = [eid for eid in ids if not by_id[eid].future.done()]
            for eid in kept:
                by_id[eid].sent = True
            if waiting[0]:
                waiting[0] = False
                self._admitted(tid)
            return kept

        try:
            answers = await self.client.ask(
                task, [(eid, a.text) for eid, a in by_id.items()], admit=admit
            )
        except asyncio.CancelledError:
            for ask in events:
                ask.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - not swallowed: every asker receives it
            for ask in events:
                if not ask.future.done():
                    ask.future.set_exception(exc)
            return
        finally:
            if waiting[0]:  # ended before the budget admitted it
                waiting[0] = False
                self._admitted(tid)
        self._deliver(task, by_id, answers)

    def _deliver(self, task: Task, by_id: dict[str, _Ask], answers: Answers) -> None:
        """Every sent event's answer or error, its share of the cost, the cache."""
        sent = {eid: ask for eid, ask in by_id.items() if ask.sent}
        if not sent:
            return  # every asker gave up before the request was sent
        share = 1 / len(sent)
        usage = answers.usage
        answered = len(answers.outputs)
        if answered and usage.calls == 1:  # a clean batch: learn its answers' size
            tid = task_id(task)
            seen = usage.completion / answered
            self._per_item[tid] = 0.5 * self._per_item.get(tid, seen) + 0.5 * seen
        model = task.model or self.client.settings.model
        # Every event sent carries an even share of every request made for the batch,
        # its lone retries included: the answered ones, the failed ones, and those whose
        # asker has gone meanwhile, so the meter sees all the tokens the provider billed.
        spent = Spent(model, usage.prompt * share, usage.cached * share,
                      usage.completion * share, usage.calls * share, usage.tier)  # fmt: skip
        for eid, ask in sent.items():
            usd = ask.charge(spent) if ask.charge is not None and usage.calls else 0.0
            future = ask.future
            if future.done():
                continue
            output = answers.outputs.get(eid)
            if output is None:
                future.set_exception(
                    answers.errors.get(eid) or ModelOutputInvalid("the model gave no answer")
                )
                continue
            if self.cache is not None:
                self.cache.put(ask.key, output)
            future.set_result(
                Reply(output, "model", model, spent.prompt, spent.cached, spent.completion,
                      usd=usd, tier=spent.tier, calls=spent.calls, served_by=usage.model)
            )  # fmt: skip

    async def aclose(self) -> None:
        """Cancel requests still running; their askers see the cancellation."""
        for tid in list(self._pending):
            while tid in self._pending:
                self._flush(tid)
        for request in list(self._requests):
            request.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)
