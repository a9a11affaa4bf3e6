"""The GPT-5.4 nano guide's pattern: asyncio, ``Semaphore(64)``, ``AsyncOpenAI``, one
request per event, on a plain confluent-kafka consumer and producer.

    python -m tests.bench.peers.guide_asyncio SPEC.json

The consumer commits automatically (confluent-kafka's default), so an event whose
request fails after the SDK's own retries (two, honouring ``retry-after``) is logged and
dropped: its offset is committed without an output. SIGTERM stops polling, waits for the
requests in flight and closes the consumer (a last commit).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import openai
from confluent_kafka import Consumer, Message, Producer

from tests.bench.peers.spec import Spec

CONCURRENCY = 64


async def enrich(client: openai.AsyncOpenAI, spec: Spec, msg: Message, producer: Producer) -> None:
    event = json.loads(msg.value() or b"{}")
    try:
        completion = await client.chat.completions.create(
            model=spec.model,
            messages=spec.messages(str(event.get("text", ""))),
            response_format=spec.response_format(),
        )
        answer: Any = json.loads(completion.choices[0].message.content or "null")
    except Exception as exc:  # noqa: BLE001 - the guide logs and moves on
        print(f"dropped {msg.partition()}/{msg.offset()}: {type(exc).__name__}", flush=True)
        return
    out = {**event, "enrichment": answer, "source": [msg.topic(), msg.partition(), msg.offset()]}
    producer.produce(spec.output_topic, json.dumps(out).encode(), key=msg.key())
    producer.poll(0)


async def main(spec: Spec) -> None:
    consumer = Consumer({"bootstrap.servers": spec.bootstrap, "group.id": spec.group,
                         "auto.offset.reset": "earliest"})  # fmt: skip
    producer = Producer({"bootstrap.servers": spec.bootstrap})
    consumer.subscribe([spec.input_topic])
    client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=spec.api_key)
    semaphore = asyncio.Semaphore(CONCURRENCY)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks: set[asyncio.Task[None]] = set()

    async def bounded(msg: Message) -> None:
        async with semaphore:
            await enrich(client, spec, msg, producer)

    while not stop.is_set():
        msg = await asyncio.to_thread(consumer.poll, 0.1)
        if msg is None or msg.error() is not None:
            continue
        await semaphore.acquire()  # don't read further than the requests allowed at once
        semaphore.release()
        task = asyncio.create_task(bounded(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    producer.flush(30)
    consumer.close()
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(Spec.read(sys.argv[1])))
