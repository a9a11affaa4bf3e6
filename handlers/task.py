"""``task``: a classification or extraction declared in the config, with no new code.

A route names the task, says what to do (``instruction``) and what to answer (a JSON
schema in ``schema``, or ``output_model = "package.module:Class"``). The event's text is
a field of the event (``text_field``, a dotted path), the whole JSON event, or the raw
text. Ticket routing and invoice extraction ship as examples (examples/tasks.toml).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field, model_validator

from handlers.enrich import EnrichingHandler, EnrichOptions
from handlers.jsonschema import import_model, model_from_schema
from handlers.model import Task
from schemas.errors import BadInput
from schemas.events import Post, _Event, check_size, no_duplicate_keys
from schemas.records import SourceRecord


class TaskOptions(EnrichOptions):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="the task's name")
    instruction: str = Field(min_length=1, description="what the model is to do")
    output_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="the answer's JSON schema (an object)"
    )
    output_model: str | None = Field(None, description="or a pydantic model: 'module:Class'")
    text_field: str | None = Field(
        None, description="dotted path of the text in a JSON event; unset: the whole event"
    )

    @model_validator(mode="after")
    def _one_output(self) -> TaskOptions:
        if (self.output_schema is None) == (self.output_model is None):
            raise ValueError("give exactly one of 'schema' (JSON schema) or 'output_model'")
        return self


class TaskHandler(EnrichingHandler):
    name = "task"
    Options = TaskOptions
    options: TaskOptions
    kind = Post

    def make_task(self) -> Task:
        opts = self.options
        if opts.output_schema is not None:
            output = model_from_schema(opts.output_schema, opts.name)
        else:
            output = import_model(str(opts.output_model))
        return Task(opts.name, opts.instruction, output)

    def decode(self, record: SourceRecord) -> tuple[Any, _Event]:
        value = record.value
        if value is None:
            raise BadInput("the record has no value (null); a JSON event or text is expected")
        check_size(value, self.options.max_event_bytes)
        try:
            original: Any = orjson.loads(value)
        except orjson.JSONDecodeError:
            if not self.options.raw_text:
                raise BadInput("the value is not valid JSON and raw_text is off") from None
            try:
                original = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadInput(f"the value is neither JSON nor UTF-8 text: {exc}") from None
        if isinstance(original, dict):
            no_duplicate_keys(value)
        text = self._text(original)
        if not text.strip():
            raise BadInput("the event's text is empty; there is nothing to judge")
        return original, Post(body=text)

    def _text(self, original: Any) -> str:
        path = self.options.text_field
        if isinstance(original, str):
            return original
        if path is None:
            return orjson.dumps(original).decode()
        found = original
        for part in path.split("."):
            if not isinstance(found, dict) or part not in found:
                raise BadInput(f"the event has no field {path!r} (text_field)")
            found = found[part]
        return found if isinstance(found, str) else orjson.dumps(found).decode()
