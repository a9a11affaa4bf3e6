"""What the model benchmarks share: the reviews, the sentiment task, and the plain-SDK
call each of them compares sluicegate's model service with.

The reviews are the labelled samples in ``../shared/datasets/sentiment`` (next to the
project's clone; see its README): ``yelp2_test.csv`` and ``imdb_test.csv``, 500 each,
column ``text``. The plain call is what one writes with the openai SDK alone: the same
instructions as the system message, one review as the user message, and the output
model as ``response_format`` (strict structured output), one request per event.
"""

from __future__ import annotations

import csv
import importlib.metadata
import itertools
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel

from handlers.model import Task
from stream.config import MetricsSettings, ModelSettings, Settings
from tests.bench.report import host

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "sentiment"
FILES = ("yelp2_test.csv", "imdb_test.csv")
API_KEY = "sim"  # the simulator wants a key, any key


def reviews(data: Path, name: str) -> list[str]:
    """The ``text`` column of one review file."""
    path = data / name
    if not path.exists():
        raise SystemExit(
            f"{path} is missing: the model benchmarks read the review samples of "
            "../shared/datasets/sentiment (pass --data DIR to read them elsewhere)"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def interleaved(data: Path) -> list[str]:
    """Both files, one review of each in turn (a mix of short and long texts)."""
    files = [reviews(data, name) for name in FILES]
    mixed = itertools.chain.from_iterable(itertools.zip_longest(*files))
    return [text for text in mixed if text is not None]


def model_id() -> str:
    return ModelSettings().model


def service_settings(url: str, **model: Any) -> Settings:
    """sluicegate's settings for a run against the simulator at ``url``: the defaults,
    with ``model`` keys changed."""
    return Settings(
        model=ModelSettings(base_url=url, api_key=API_KEY, **model),
        metrics=MetricsSettings(enabled=False),
    )


def plain_client(url: str, **options: Any) -> openai.AsyncOpenAI:
    """The SDK as it comes (``max_retries`` 2, honouring ``retry-after``)."""
    return openai.AsyncOpenAI(base_url=url, api_key=API_KEY, **options)


async def ask_plain(client: openai.AsyncOpenAI, task: Task, text: str) -> BaseModel:
    """One event, one request: the plain SDK's structured-output call."""
    completion = await client.chat.completions.parse(
        model=task.model or model_id(),
        messages=[
            {"role": "system", "content": task.instructions},
            {"role": "user", "content": text},
        ],
        response_format=task.output,
    )
    parsed = completion.choices[0].message.parsed
    if parsed is None:
        raise ValueError(f"no parsed answer (finish_reason {completion.choices[0].finish_reason})")
    return parsed


def machine() -> str:
    """One line saying what measured: the machine, the SDK, the simulator."""
    return (
        f"{host()}, openai {importlib.metadata.version('openai')}; the OpenAI simulator "
        "(stream/simulator) in its own process on the same machine"
    )
