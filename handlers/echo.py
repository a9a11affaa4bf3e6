"""``echo``: copies each event with a small trace added. The runtime's proving ground.

It decodes like a real handler (so bad bytes are dead-lettered for the same reasons), can
simulate work (``delay_ms``) for backpressure tests and benchmarks, and adds nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson

from handlers.base import Handler, HandlerContext, HandlerOptions, Result
from schemas.errors import BadInput
from schemas.records import SourceRecord


class EchoOptions(HandlerOptions):
    # json: the value must be a JSON object; text: any UTF-8 text; bytes: anything.
    accept: Literal["json", "text", "bytes"] = "json"
    delay_ms: float = 0.0


def decode_json_object(value: bytes | None) -> dict[str, object]:
    """Parse a record value as a JSON object, or raise BadInput saying what is wrong."""
    if value is None:
        raise BadInput("the record has no value (null); a JSON object is expected")
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"the value is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadInput(f"the value is JSON {type(parsed).__name__}, a JSON object is expected")
    return parsed


def decode_text(value: bytes | None) -> str:
    """Decode a record value as UTF-8 text, or raise BadInput naming the bad byte."""
    if value is None:
        raise BadInput("the record has no value (null); text is expected")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"the value is not UTF-8: {exc}") from None


class EchoHandler(Handler):
    name = "echo"
    Options = EchoOptions
    options: EchoOptions

    def __init__(self, options: HandlerOptions, context: HandlerContext | None = None) -> None:
        super().__init__(options, context)
        self.answers_now = not self.options.delay_ms

    def try_now(self, record: SourceRecord) -> Result | None:
        return self._echo(record) if self.answers_now else None

    async def handle(self, record: SourceRecord) -> Result:
        if self.options.delay_ms:
            await asyncio.sleep(self.options.delay_ms / 1000)
        return self._echo(record)

    def _echo(self, record: SourceRecord) -> Result:
        trace = {"source": record.where, "bytes": len(record.value or b"")}
        if self.options.accept == "json":
            event: dict[str, object] = decode_json_object(record.value)
        elif self.options.accept == "text":
            event = {"text": decode_text(record.value)}
        else:
            event = {"size": len(record.value or b"")}
        event["echo"] = trace
        return Result(orjson.dumps(event))
