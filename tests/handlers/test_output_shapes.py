"""The three output shapes a route can choose, from real handler outputs, each checked
against its exported JSON Schema; the original event carried exactly (numbers no parser
round-trips: beyond 64 bits, 2**64, 1e-400); and the model's own id as the source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs; a dev dependency
import orjson
import pytest
from pydantic import BaseModel

from handlers.base import Handler, HandlerContext
from handlers.model import Reply, Task
from handlers.registry import HANDLERS
from schemas import export
from schemas.errors import BadInput
from schemas.records import SourceRecord
from stream.model.service import ModelService

# What no float round-trips: a parse and re-serialise would change every one of these.
EXACT = (
    b'{"order": 123456789012345678901234567890, "count": 18446744073709551616, '
    b'"tiny": 1e-400, "price": 1.10, "body": "The chair arrived broken and support '
    b'never answered."}'
)


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((export.FOLDER / f"{name}.schema.json").read_text())
    return data


def validate(instance: object, name: str) -> None:
    """Validate against the exported schema, resolving its own ``$defs``."""
    jsonschema.validate(instance, schema(name))


def build(model: ModelService | None, /, **options: Any) -> Handler:
    return HANDLERS["sentiment"].from_options(
        {"local_tier": False, **options}, HandlerContext("reviews", model)
    )


def record(value: bytes) -> SourceRecord:
    return SourceRecord("reviews", 0, 7, b"k", value)


async def value_of(handler: Handler, value: bytes) -> bytes:
    result = await handler.handle(record(value))
    assert result.value is not None
    return result.value


@pytest.mark.asyncio
async def test_enriched_shape_carries_the_original_bytes(model: ModelService) -> None:
    """The default shape embeds the event's JSON byte for byte, and validates."""
    out = await value_of(build(model), EXACT)
    assert out.startswith(b'{"event":' + EXACT + b',"enrichment":')
    validate(orjson.loads(out), "enriched")


@pytest.mark.asyncio
async def test_merged_shape_adds_the_block_under_the_key(model: ModelService) -> None:
    """output = merged: the event's own fields, bytes kept, plus the block at merge_key."""
    out = await value_of(build(model, output="merged", merge_key="sluicegate"), EXACT)
    assert out.startswith(EXACT[:-1] + b',"sluicegate":{')
    merged = orjson.loads(out)
    assert merged["body"].startswith("The chair")
    validate({**merged, "enrichment": merged.pop("sluicegate")}, "merged")
    default = orjson.loads(await value_of(build(model, output="merged"), EXACT))
    validate(default, "merged")


@pytest.mark.asyncio
async def test_merged_shape_refuses_to_overwrite_a_field(model: ModelService) -> None:
    """An event that already has the merge key is bad input, named, not overwritten."""
    handler = build(model, output="merged", merge_key="body")
    with pytest.raises(BadInput, match="already has a field 'body'"):
        await value_of(handler, EXACT)


@pytest.mark.asyncio
async def test_answer_shape_is_the_answer_alone(model: ModelService) -> None:
    """output = answer: the handler's answer, valid against its answer schema."""
    out = orjson.loads(await value_of(build(model, output="answer"), EXACT))
    assert "sentiment" in out
    assert "event" not in out
    assert "enrichment" not in out
    validate(out, "answer.sentiment")


@pytest.mark.asyncio
async def test_raw_text_lines_in_each_shape(model: ModelService) -> None:
    """A raw (non-JSON) line is a JSON string in `enriched`, {"text": ...} in `merged`."""
    line = b"Great lamp, bright and cheap. Would buy again."
    out = orjson.loads(await value_of(build(model, raw_text=True), line))
    assert out["event"] == line.decode()
    merged = orjson.loads(await value_of(build(model, raw_text=True, output="merged"), line))
    assert merged["text"] == line.decode()
    validate(merged, "merged")


def test_unknown_shape_is_refused() -> None:
    """A misspelt output shape names the accepted ones."""
    with pytest.raises(ValueError, match="enriched"):
        build(None, output="flat")


class _ServedBy:
    """A model port whose server says which model answered (as the simulator does)."""

    def __init__(self, served: str) -> None:
        self.served = served

    async def ask(self, task: Task, text: str, *, route: str, batch: bool = True) -> Reply:
        output: BaseModel = task.output.model_validate(
            {"sentiment": "negative", "intent": "support", "confidence": 0.9, "phrases": []}
        )
        return Reply(output, "model", "gpt-5.4-nano", 10, 0, 2, 0.0001, calls=1,
                     served_by=self.served)  # fmt: skip

    def take_alerts(self) -> list[Any]:
        return []


@pytest.mark.asyncio
async def test_source_is_the_model_the_server_names() -> None:
    """An answer the simulator served says so in `source` (ends in -simulated)."""
    port: Any = _ServedBy("gpt-5.4-nano-simulated")
    out = orjson.loads(await value_of(build(port), EXACT))
    assert out["enrichment"]["source"] == "gpt-5.4-nano-simulated"
    plain: Any = _ServedBy("")
    out = orjson.loads(await value_of(build(plain), EXACT))
    assert out["enrichment"]["source"] == "gpt-5.4-nano"


def test_schema_files_exist_for_every_shape() -> None:
    """`make schemas` writes one schema per output shape."""
    for name in ("enriched", "merged", "answer.sentiment", "answer.moderation", "answer.log"):
        assert Path(export.FOLDER / f"{name}.schema.json").is_file()
