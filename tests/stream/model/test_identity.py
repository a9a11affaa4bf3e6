"""A task's identity (what may share a batch and a cache entry) covers its schema."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from handlers.jsonschema import model_from_schema
from handlers.model import Task
from stream.model.batcher import Batcher, task_id
from stream.model.cache import TtlLru
from tests.stream.model.fakes import Server, answer, client, completion

INSTRUCTION = "Route the ticket."
SCHEMA_A = {"type": "object", "properties": {"priority": {"enum": ["high", "low"]}},
            "required": ["priority"]}  # fmt: skip
SCHEMA_B = {"type": "object", "properties": {"team": {"enum": ["billing", "tech"]}},
            "required": ["team"]}  # fmt: skip


def tasks() -> tuple[Task, Task]:
    # Same name, same instruction, same output class name: only the schema differs.
    a = Task("tickets", INSTRUCTION, model_from_schema(SCHEMA_A, "tickets"))
    b = Task("tickets", INSTRUCTION, model_from_schema(SCHEMA_B, "tickets"))
    return a, b


def test_the_output_schema_is_part_of_the_identity() -> None:
    """Routes that differ only by their schema have different task ids."""
    a, b = tasks()
    assert a.output.__qualname__ == b.output.__qualname__
    assert task_id(a) != task_id(b)
    # Stable: the same declaration built again (another process, a restart) is the same.
    assert task_id(a) == task_id(tasks()[0])


@pytest.mark.asyncio
async def test_routes_with_different_schemas_share_no_cache_entry() -> None:
    """Route B is asked itself, not answered with route A's cached item."""

    def reply(body: dict[str, Any], n: int) -> httpx2.Response:
        eids = server.events(n)
        props = body["response_format"]["json_schema"]["schema"]["$defs"]
        item = next(iter(props.values()))["properties"]
        field = "priority" if "priority" in item else "team"
        value = "high" if field == "priority" else "tech"
        return completion(answer(*({"id": e, field: value} for e in eids)))

    server = Server(reply)
    batcher = Batcher(client(server), max_wait_s=0.001, cache=TtlLru(100, 60))
    a, b = tasks()
    first = await batcher.ask(a, "the printer is on fire")
    second = await batcher.ask(b, "the printer is on fire")
    assert first.output.model_dump() == {"priority": "high"}
    assert second.source == "model"
    assert second.output.model_dump() == {"team": "tech"}
    # Asked together, they go out as two requests, never as one batch.
    server.requests.clear()
    await asyncio.gather(batcher.ask(a, "x"), batcher.ask(b, "x"))
    assert len(server.requests) == 2
