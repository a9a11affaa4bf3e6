"""Log-parsing answers: a ``template`` field gets the event's template, not random words."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from stream.model.prompt import format_events, parse_events
from stream.simulator import answers, oracle
from stream.simulator.jsonschema import check_strict


class Level(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class Parameter(BaseModel):
    name: str
    value: str


class ParsedLog(BaseModel):
    template: str
    parameters: list[Parameter]
    level: Level
    component: str
    timestamp: str


def _answer(text: str) -> Any:
    schema = to_strict_json_schema(ParsedLog)
    check_strict(schema)
    return answers.structured(schema, parse_events(format_events([("1", text)])), text, None)


def test_template_fields_hold_the_events_template_and_its_values() -> None:
    line = (
        "2026-05-04 10:00:01,123 ERROR api.Gateway: upstream 10.0.0.7:8080 timed out "
        "after 3 retries for user bob, request id=9f3a2c1d77 path /v1/orders"
    )
    parsed = ParsedLog.model_validate(_answer(line))
    assert parsed.template == (
        "upstream <*> timed out after <*> retries for user <*>, request id=<*> path <*>"
    )
    assert [(p.name, p.value) for p in parsed.parameters] == [
        ("upstream", "10.0.0.7:8080"),
        ("after", "3"),
        ("user", "bob"),
        ("id", "9f3a2c1d77"),
        ("path", "/v1/orders"),
    ]
    assert (parsed.level, parsed.component) == (Level.error, "api.Gateway")
    assert parsed.timestamp == "2026-05-04T10:00:01.123000"


def test_a_bare_message_keeps_its_words_and_has_no_header() -> None:
    """No timestamp first: nothing is taken for a header, whatever colons it has."""
    parsed = oracle.log_line("pam_unix(sshd:auth): check pass; user unknown")
    assert parsed.template == "pam_unix(sshd:auth): check pass; user unknown"
    assert (parsed.timestamp, parsed.component, parsed.parameters) == (None, None, ())
    answer = _answer("Deleting block blk_-1608 file /data/dfs/blk_-1608")
    assert answer["template"] == "Deleting block <*> file <*>"
    assert answer["component"] == "unknown"
    assert [p["value"] for p in answer["parameters"]] == ["blk_-1608", "/data/dfs/blk_-1608"]
