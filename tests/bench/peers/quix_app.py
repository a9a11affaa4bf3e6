"""Quix Streams: an ``Application`` whose dataframe makes one synchronous request per
event with the openai SDK and writes the answer to the output topic.

    .venv-quix/bin/python -m tests.bench.peers.quix_app SPEC.json

Quix runs one event at a time per process (scale is more processes in the group). A
request that fails after the SDK's own retries is logged and the event filtered out:
Quix commits past it without an output, as the guide's pattern does.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
from quixstreams import Application, message_context  # type: ignore[import-not-found,unused-ignore]

from tests.bench.peers.spec import Spec


def main(spec: Spec) -> None:
    app = Application(broker_address=spec.bootstrap, consumer_group=spec.group,
                      auto_offset_reset="earliest")  # fmt: skip
    client = openai.OpenAI(base_url=spec.base_url, api_key=spec.api_key)
    source = app.topic(spec.input_topic, value_deserializer="json")
    sink = app.topic(spec.output_topic, value_serializer="json")

    def enrich(event: dict[str, Any]) -> dict[str, Any] | None:
        ctx = message_context()
        try:
            completion = client.chat.completions.create(
                model=spec.model,
                messages=spec.messages(str(event.get("text", ""))),
                response_format=spec.response_format(),
            )
            answer = json.loads(completion.choices[0].message.content or "null")
        except Exception as exc:  # noqa: BLE001 - logged, the event dropped
            print(f"dropped {ctx.partition}/{ctx.offset}: {type(exc).__name__}", flush=True)
            return None
        return {**event, "enrichment": answer,
                "source": [spec.input_topic, ctx.partition, ctx.offset]}  # fmt: skip

    sdf = app.dataframe(source)
    sdf = sdf.apply(enrich).filter(lambda value: value is not None)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main(Spec.read(sys.argv[1]))
