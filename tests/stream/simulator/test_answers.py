"""Answers without a server: every strict-mode keyword, label choice, spoiled answers."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from stream.model.prompt import format_events, parse_events
from stream.simulator import answers, labels, oracle
from stream.simulator.faults import break_json, truncate
from stream.simulator.jsonschema import SchemaProblem, check_strict, spoil_enum


class Level(StrEnum):
    info = "info"
    warning = "warning"
    error = "error"


class Node(BaseModel):
    name: str
    kind: Literal["dir", "file"] = "file"
    children: list[Node]


class LogLine(BaseModel):
    level: Level
    schema_version: Literal[2] = 2
    at: str = Field(json_schema_extra={"format": "date-time"})
    request_id: str = Field(json_schema_extra={"format": "uuid"})
    host: str | None
    retries: int = Field(ge=0, le=3)
    latency_ms: float = Field(gt=0, lt=1000)
    tags: list[str] = Field(min_length=2, max_length=4)
    tree: Node
    alerting: bool
    extra: None


def _answer(model: type[BaseModel], text: str) -> Any:
    schema = to_strict_json_schema(model)
    check_strict(schema)
    events = parse_events(format_events([("1", text)]))
    return answers.structured(schema, events, text, salt=None)


def test_every_strict_keyword_validates() -> None:
    """$defs/$ref (recursive), const, anyOf with null, bounds, arrays, formats all validate."""
    line = "2026-05-04T10:00:01Z ERROR api 10.0.0.7 upstream timed out after 3 retries"
    LogLine.model_validate(_answer(LogLine, line))


def test_log_level_and_timestamp_come_from_the_text() -> None:
    """A log level enum and a date-time field are read from the log line."""
    value = _answer(LogLine, "2026-05-04T10:00:01Z WARNING disk at 91%")
    assert (value["level"], value["at"]) == ("warning", "2026-05-04T10:00:01Z")


def test_batch_detection_needs_results_of_objects_with_ids() -> None:
    """Only a `results` array of objects with an `id` is a micro-batch answer."""

    class WithIds(BaseModel):
        results: list[dict[str, int]]

    class Item(BaseModel):
        id: int
        ok: bool

    class Batch(BaseModel):
        results: list[Item]

    assert answers.batch_items(to_strict_json_schema(WithIds), {}) is None
    schema = to_strict_json_schema(Batch)
    events = [("7", "fine"), ("9", "broken")]
    value = answers.structured(schema, events, "", salt=None)
    assert [item.id for item in Batch.model_validate(value).results] == [7, 9]


@pytest.mark.parametrize(
    ("values", "text", "expected"),
    [
        (["positive", "negative", "neutral"], "I love it, fantastic", "positive"),
        (
            ["positive", "negative", "neutral", "frustrated"],
            "Still broken!! Ridiculous",
            "frustrated",
        ),
        (["safe", "review", "violates"], "Have a nice day", "safe"),
        (["none", "harassment", "violence"], "I will stab you", "violence"),
        (["DEBUG", "INFO", "WARN", "ERROR"], "2026-01-01 WARN cache miss ratio high", "WARN"),
        (["billing", "shipping", "login"], "my shipping label never arrived", "shipping"),
    ],
)
def test_enum_labels_make_sense(values: list[str], text: str, expected: str) -> None:
    """Enum choices follow the text: sentiment, verdicts, categories, levels, mentions."""
    assert labels.enum_value(values, text, "$.label") == expected


def test_keyword_fallbacks_judge_obvious_texts() -> None:
    """Without VADER or alt-profanity-check, keyword lists still get obvious cases right."""
    assert oracle.keyword_sentiment("I love it, fantastic").compound > 0
    assert oracle.keyword_sentiment("terrible, the worst").compound < 0
    assert oracle.keyword_profanity("you idiot, shit") > 0.5 > oracle.keyword_profanity("hello")


def test_other_enums_are_stable_hashes() -> None:
    """An enum the oracle cannot read is a deterministic function of (text, field)."""
    values = ["alpha", "beta", "gamma"]
    picks = {labels.enum_value(values, "some text", "$.x") for _ in range(5)}
    assert len(picks) == 1


def test_spoiled_enum_leaves_the_enum_and_nothing_else() -> None:
    """wrong_enum changes exactly one enum field to a value outside its enum."""
    schema = to_strict_json_schema(LogLine)
    value = _answer(LogLine, "ERROR boom")
    done, spoiled = spoil_enum(value, schema, schema)
    assert done
    assert spoiled["level"] not in {"info", "warning", "error"}
    assert {k: v for k, v in spoiled.items() if k != "level"} == {
        k: v for k, v in value.items() if k != "level"
    }


def test_check_strict_wants_an_object_root() -> None:
    """A strict schema whose root is not an object is refused."""
    with pytest.raises(SchemaProblem, match='type: "object"'):
        check_strict({"type": "array", "items": {"type": "string"}})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_broken_and_truncated_json_never_parse(value: dict[str, Any]) -> None:
    """invalid_json and truncated contents are never valid JSON, whatever the answer."""
    content = orjson.dumps(value).decode()
    for spoiled in (break_json(content), truncate(content)):
        with pytest.raises(json.JSONDecodeError):
            json.loads(spoiled)
