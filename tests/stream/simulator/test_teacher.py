"""The teacher mode: texts of a labelled file get the file's label, flipped on a seeded
share of the texts, through the real client and the built-in handlers' own schemas."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from handlers.base import HandlerContext
from handlers.redact import Redactor
from handlers.registry import HANDLERS
from schemas.enriched import EnrichedEvent
from schemas.records import SourceRecord
from stream.config import Settings
from stream.errors import ConfigError
from stream.model.service import ModelService
from stream.simulator import teacher
from stream.simulator.server import running_simulator
from stream.simulator.settings import SimulatorSettings

# Texts whose labels contradict what the text says, so the teacher is visibly at work.
SENTIMENT = [
    (f"Review number {i}: " + ("I loved it." if i % 2 else "Awful."), i % 2) for i in range(40)
]


def _csv(path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["original_index", "text", "label", "label_text"])
        for i, (text, positive) in enumerate(SENTIMENT):
            label = "negative" if positive else "positive"  # the opposite of the words
            writer.writerow([i, text, int(not positive), label])
    return path


Make = Callable[[Path, float], Awaitable[ModelService]]


@pytest_asyncio.fixture
async def service_for() -> AsyncIterator[Make]:
    """Builds a ModelService on a simulator teaching from a file at a noise level."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(file: Path, noise: float) -> ModelService:
            sim = SimulatorSettings(
                port=0, latency_median_ms=1, seed=3, teacher=str(file), teacher_noise=noise
            )
            url = await stack.enter_async_context(running_simulator(sim))
            model = {"base_url": url, "api_key": "sim", "batch_wait_ms": 2}
            svc = ModelService(Settings(model=model))
            stack.push_async_callback(svc.aclose)
            return svc

        yield make


async def _answers(svc: ModelService, name: str, texts: list[str]) -> list[EnrichedEvent]:
    handler = HANDLERS[name].from_options({"local_tier": False}, HandlerContext("r", svc))
    out = []
    for i, text in enumerate(texts):
        result = await handler.handle(SourceRecord("t", 0, i, None, orjson.dumps({"text": text})))
        assert result.value is not None
        out.append(EnrichedEvent.model_validate_json(result.value))
    return out


@pytest.mark.asyncio
async def test_sentiment_follows_the_files_labels(tmp_path: Path, service_for: Make) -> None:
    """With no noise, every known text gets the file's label, even against its words."""
    svc = await service_for(_csv(tmp_path / "reviews.csv"), 0.0)
    events = await _answers(svc, "sentiment", [t for t, _ in SENTIMENT])
    got = [e.enrichment.answer["sentiment"] for e in events]
    assert got == ["negative" if p else "positive" for _, p in SENTIMENT]


@pytest.mark.asyncio
async def test_noise_flips_a_seeded_share_of_texts(tmp_path: Path, service_for: Make) -> None:
    """With noise 0.3, about that share is flipped, and the same texts every time."""
    file = _csv(tmp_path / "reviews.csv")
    svc = await service_for(file, 0.3)
    texts = [t for t, _ in SENTIMENT]
    first = [e.enrichment.answer["sentiment"] for e in await _answers(svc, "sentiment", texts)]
    svc.cache.clear()
    again = [e.enrichment.answer["sentiment"] for e in await _answers(svc, "sentiment", texts)]
    assert first == again
    flipped = sum(
        g == ("positive" if p else "negative") for g, (_, p) in zip(first, SENTIMENT, strict=True)
    )
    assert 4 <= flipped <= 20
    assert flipped == teacher.load(file, 0.3, 3).flipped


@pytest.mark.asyncio
async def test_moderation_verdict_and_categories(tmp_path: Path, service_for: Make) -> None:
    """A flagged row is answered violates with its category high; a clean one safe."""
    file = tmp_path / "mod.jsonl"
    rows = [{"prompt": "have a lovely day friend", "H": 1, "V": 0},
            {"prompt": "I will be there at noon", "S": 0, "H": 0}]  # fmt: skip
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    svc = await service_for(file, 0.0)
    flagged, clean = await _answers(svc, "moderation", [str(r["prompt"]) for r in rows])
    assert flagged.enrichment.answer["action"] == "violates"
    assert flagged.enrichment.answer["categories"]["hate"] == teacher.FLAGGED_SCORE
    assert clean.enrichment.answer["action"] == "safe"
    assert max(clean.enrichment.answer["categories"].values()) == teacher.CLEAN_SCORE


def test_redacted_texts_are_found(tmp_path: Path) -> None:
    """The model sees PII replaced; the teacher still knows the text."""
    file = tmp_path / "r.jsonl"
    file.write_text(json.dumps({"text": "Mail me at jo@example.com, great!", "label": "positive"}))
    found = teacher.load(file, 0.0, None)
    redacted = Redactor().redact("Mail me at jo@example.com, great!").text
    assert redacted != "Mail me at jo@example.com, great!"
    assert found.enum(["positive", "negative"], redacted) == "positive"


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("a.csv", "text,stars\nhi,5\n", "'label_text' or 'label'"),
        ("b.jsonl", '{"prompt": "x", "H": 0}\nnot json\n', "b.jsonl:2: not JSON"),
        ("c.jsonl", '{"body": "x"}\n', "'prompt' or 'text'"),
        ("d.jsonl", "\n", "no labelled rows"),
    ],
)
def test_bad_files_are_refused_with_where_and_what(
    tmp_path: Path, name: str, content: str, says: str
) -> None:
    """A bad teacher file stops the start with the file, the line and what is accepted."""
    file = tmp_path / name
    file.write_text(content)
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        teacher.load(file, 0.1, None)
    with pytest.raises(ConfigError, match="cannot read"):
        teacher.load(tmp_path / "missing.csv", 0.1, None)
