"""``sluicegate eval``: run a handler over a labelled file and measure it.

Each handler runs twice over the same rows: its local tier alone (what the free tier
gets right, and how many events it dares to answer at its threshold), then the cascade
(local tier, then the model for the rest) as a route would run it. The model is the one
configured (``OPENAI_API_KEY`` / ``model.base_url``), else the simulator started here:
then the figures measure the plumbing (calls, tokens, dollars, coverage), not a real
model's judgement, and the report says so.

Formats read (see ``../shared/datasets/README.md``): sentiment CSV with ``text`` and
``label_text`` (positive/negative); moderation JSONL with ``prompt`` and 0/1 flags per
category code; Loghub ``<Sys>_2k.log_structured_corrected.csv`` for log parsing.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from handlers.base import Handler, HandlerContext
from handlers.registry import HANDLERS
from schemas.enriched import EnrichedEvent
from schemas.errors import EventError
from schemas.records import SourceRecord
from stream.config import Settings
from stream.model.endpoint import model_service
from stream.model.service import ModelService

# The moderation set's category codes and the taxonomy category each one scores.
MODERATION_CODES = {
    "S": "sexual",
    "H": "hate",
    "V": "violence",
    "HR": "harassment",
    "SH": "self-harm",
    "S3": "sexual/minors",
    "H2": "hate/threatening",
    "V2": "violence/graphic",
}


@dataclass
class Row:
    """One labelled example: the record value to send and its labels."""

    value: bytes
    labels: dict[str, Any]


@dataclass
class Run:
    """What one pass over the rows produced."""

    name: str
    events: list[EnrichedEvent | None] = field(default_factory=list)  # None: dead-lettered
    seconds: float = 0.0
    calls: int = 0
    prompt_tokens: float = 0.0
    cached_tokens: float = 0.0
    completion_tokens: float = 0.0
    usd: float = 0.0

    def per_1000(self, value: float) -> float:
        return value * 1000 / max(1, len(self.events))

    def local_share(self) -> float:
        done = [e for e in self.events if e is not None]
        return sum(e.enrichment.tier == "local" for e in done) / max(1, len(done))


# -- reading the datasets -----------------------------------------------------------------


def read_sentiment(path: Path, limit: int | None) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [Row(orjson.dumps({"id": r.get("original_index"), "text": r["text"]}),
                    {"label": r["label_text"]}) for r in csv.DictReader(f)]  # fmt: skip
    return rows[:limit]


def read_moderation(path: Path, limit: int | None) -> list[Row]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            labels = {code: item[code] for code in MODERATION_CODES if code in item}
            rows.append(Row(orjson.dumps({"text": item["prompt"]}), labels))
    return rows[:limit]


# -- running a handler --------------------------------------------------------------------


async def run_handler(
    name: str,
    handler: Handler,
    rows: Sequence[Row],
    service: ModelService | None,
    *,
    concurrency: int = 256,
) -> Run:
    """Every row through the handler as the runtime would call it (``try_now`` first,
    then ``handle``), many at a time so micro-batching works as in a stream."""
    run = Run(name)
    before = _tally(service)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, row: Row) -> EnrichedEvent | None:
        record = SourceRecord("eval", 0, i, None, row.value)
        try:
            result = handler.try_now(record) if handler.answers_now else None
            if result is None:
                async with gate:
                    result = await handler.handle(record)
        except EventError:
            return None
        if result.value is None:  # an explicit skip
            return None
        return EnrichedEvent.model_validate_json(result.value)

    started = time.perf_counter()
    run.events = list(await asyncio.gather(*(one(i, r) for i, r in enumerate(rows))))
    run.seconds = time.perf_counter() - started
    after = _tally(service)
    run.calls, run.prompt_tokens, run.cached_tokens, run.completion_tokens, run.usd = (
        int(after[0] - before[0]), *(a - b for a, b in zip(after[1:], before[1:], strict=True))
    )  # fmt: skip
    return run


def _tally(service: ModelService | None) -> tuple[float, float, float, float, float]:
    if service is None:
        return (0, 0, 0, 0, 0)
    t = service.meter.tallies.values()
    return (
        sum(x.calls for x in t) + service.moderations,
        sum(x.prompt for x in t),
        sum(x.cached for x in t),
        sum(x.completion for x in t),
        sum(x.usd for x in t),
    )


def build(name: str, options: dict[str, Any], service: ModelService | None) -> Handler:
    return HANDLERS[name].from_options(options, HandlerContext(f"eval-{name}", service))


# -- scoring ------------------------------------------------------------------------------


def f1(pairs: Iterable[tuple[bool, bool]]) -> tuple[float, float, float]:
    """Precision, recall and F1 of (predicted, actual) pairs for the positive class."""
    counts = Counter(pairs)
    tp, fp, fn = counts[True, True], counts[True, False], counts[False, True]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if tp else 0.0)


def sentiment_label(event: EnrichedEvent | None) -> str | None:
    """Our four labels on the binary set: frustrated is negative, neutral is neither."""
    if event is None:
        return None
    label = event.enrichment.answer.get("sentiment")
    return "negative" if label == "frustrated" else label


def score_sentiment(rows: Sequence[Row], run: Run) -> dict[str, float]:
    gold = [r.labels["label"] for r in rows]
    pred = [sentiment_label(e) for e in run.events]
    out = {"accuracy": sum(p == g for p, g in zip(pred, gold, strict=True)) / len(rows)}
    for label in ("positive", "negative"):
        out[f"f1_{label}"] = f1((p == label, g == label) for p, g in zip(pred, gold, strict=True))[
            2
        ]
    out["macro_f1"] = (out["f1_positive"] + out["f1_negative"]) / 2
    local = [(p, g) for p, g, e in zip(pred, gold, run.events, strict=True)
             if e is not None and e.enrichment.tier == "local"]  # fmt: skip
    out["local_coverage"] = len(local) / len(rows)
    out["local_precision"] = sum(p == g for p, g in local) / len(local) if local else 0.0
    return out


def score_moderation(rows: Sequence[Row], run: Run) -> dict[str, float]:
    out: dict[str, float] = {}
    flagged = []
    for row, event in zip(rows, run.events, strict=True):
        if event is None:
            continue
        any_label = any(v == 1 for v in row.labels.values())
        flagged.append((event.enrichment.answer["action"] != "safe", any_label))
    out["accuracy_flagged"] = sum(p == a for p, a in flagged) / max(1, len(flagged))
    out["f1_flagged"] = f1(flagged)[2]
    for code, category in MODERATION_CODES.items():
        pairs = [
            (e.enrichment.answer["categories"][category] >= 0.5, row.labels[code] == 1)
            for row, e in zip(rows, run.events, strict=True)
            if e is not None and code in row.labels
        ]
        out[f"f1_{category}"] = f1(pairs)[2]
    local = [(p, a) for (p, a), e in zip(flagged, [e for e in run.events if e is not None],
                                          strict=True) if e.enrichment.tier == "local"]  # fmt: skip
    out["local_coverage"] = len(local) / len(rows)
    out["local_precision"] = sum(not a for _, a in local) / len(local) if local else 0.0
    return out


SCORERS: dict[str, Callable[[Sequence[Row], Run], dict[str, float]]] = {
    "sentiment": score_sentiment,
    "moderation": score_moderation,
}
READERS: dict[str, Callable[[Path, int | None], list[Row]]] = {
    "sentiment": read_sentiment,
    "moderation": read_moderation,
}


async def evaluate(
    name: str, path: Path, settings: Settings, *, limit: int | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[list[tuple[Run, dict[str, float]]], str]:  # fmt: skip
    """Local tier alone, then the cascade: ``([(run, scores)...], model described)``."""
    rows = READERS[name](path, limit)
    if not rows:
        raise ValueError(f"{path}: no rows")
    options = options or {}
    results = []
    alone = build(name, {**options, "local_threshold": 0.0}, None)
    run = await run_local_only(name, alone, rows)
    results.append((run, SCORERS[name](rows, run)))
    async with model_service(settings) as (service, where):
        cascade = build(name, options, service)
        run = await run_handler("cascade (local tier, then the model)", cascade, rows, service)
        results.append((run, SCORERS[name](rows, run)))
        nolocal = build(name, {**options, "local_tier": False}, service)
        service.cache.clear()
        run = await run_handler("model only", nolocal, rows, service)
        results.append((run, SCORERS[name](rows, run)))
    return results, where


async def run_local_only(name: str, handler: Handler, rows: Sequence[Row]) -> Run:
    """The local tier with its threshold at 0, so it answers every event it can; rows it
    cannot answer at all count as unanswered (None)."""

    class _NoModel:
        async def ask(self, *_: object, **__: object) -> Any:
            raise EventError("the local tier alone does not call the model")

        async def moderate(self, *_: object, **__: object) -> Any:
            raise EventError("the local tier alone does not call the model")

    handler.context = HandlerContext(handler.context.route, _NoModel())
    return await run_handler(f"local tier alone ({name})", handler, rows, None)


# -- the report ---------------------------------------------------------------------------


def report(name: str, path: Path, results: list[tuple[Run, dict[str, float]]], where: str) -> str:
    """A markdown table: quality, the local tier's share and what the model cost."""
    keys = _quality_keys(name, results[0][1])
    head = ["run", *keys, "local coverage", "local precision", "model calls /1k",
            "prompt tok /1k", "cached tok /1k", "output tok /1k", "$ /1k"]  # fmt: skip
    lines = [
        f"### {name}: `{path.name}` ({len(results[0][0].events)} rows, model: {where})",
        "",
        "| " + " | ".join(head) + " |",
        "|---" + "|---:" * (len(head) - 1) + "|",
    ]
    for run, scores in results:
        cells = [
            run.name,
            *(f"{scores[k]:.3f}" for k in keys),
            f"{scores['local_coverage']:.1%}",
            f"{scores['local_precision']:.3f}",
            f"{run.per_1000(run.calls):,.1f}",
            f"{run.per_1000(run.prompt_tokens):,.0f}",
            f"{run.per_1000(run.cached_tokens):,.0f}",
            f"{run.per_1000(run.completion_tokens):,.0f}",
            f"{run.per_1000(run.usd):.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if name == "moderation":
        lines += ["", "Per category F1 (rows labelled for that category only):", "",
                  "| run | " + " | ".join(MODERATION_CODES.values()) + " |",
                  "|---" + "|---:" * len(MODERATION_CODES) + "|"]  # fmt: skip
        for run, scores in results:
            cells = [f"{scores['f1_' + c]:.3f}" for c in MODERATION_CODES.values()]
            lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _quality_keys(name: str, scores: dict[str, float]) -> list[str]:
    if name == "sentiment":
        return ["accuracy", "macro_f1"]
    return ["accuracy_flagged", "f1_flagged"]
