"""``sluicegate eval``: run a handler over a labelled file and measure it.

Each handler runs twice over the same rows: its local tier alone (what the free tier
gets right, and how many events it dares to answer at its threshold), then the cascade
(local tier, then the model for the rest) as a route would run it. The model is the one
configured (``OPENAI_API_KEY`` / ``model.base_url``), else the simulator started here:
then the figures measure the plumbing (calls, tokens, dollars, coverage), not a real
model's judgement, and the report says so.

Formats read (see ``../shared/datasets/README.md``): sentiment CSV with ``text`` and
``label_text`` (positive/negative); moderation JSONL with ``prompt`` and 0/1 flags per
category code. Log parsing (Loghub) is stream/evaluation/logs.py.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import Counter, defaultdict
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
    first_offset: int = 0,
) -> Run:
    """Every row through the handler as the runtime would call it (``try_now`` first,
    then ``handle``), many at a time so micro-batching works as in a stream."""
    run = Run(name)
    before = _tally(service)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, row: Row) -> EnrichedEvent | None:
        record = SourceRecord("eval", 0, first_offset + i, None, row.value)
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


def moderation_flagged(row: Row, event: EnrichedEvent | None) -> tuple[bool | None, bool]:
    """(predicted flagged, labelled flagged): flagged is any action but safe."""
    actual = any(v == 1 for v in row.labels.values())
    return (None if event is None else event.enrichment.answer["action"] != "safe"), actual


def score_moderation(rows: Sequence[Row], run: Run) -> dict[str, float]:
    out: dict[str, float] = {}
    flagged = [moderation_flagged(r, e) for r, e in zip(rows, run.events, strict=True)]
    out["accuracy_flagged"] = sum(p == a for p, a in flagged) / len(rows)  # None is wrong
    out["f1_flagged"] = f1((p is True, a) for p, a in flagged)[2]
    for code, category in MODERATION_CODES.items():
        pairs = [
            (e.enrichment.answer["categories"][category] >= 0.5, row.labels[code] == 1)
            for row, e in zip(rows, run.events, strict=True)
            if e is not None and code in row.labels
        ]
        out[f"f1_{category}"] = f1(pairs)[2]
    local = [p == a for (p, a), e in zip(flagged, run.events, strict=True)
             if e is not None and e.enrichment.tier == "local"]  # fmt: skip
    out["local_coverage"] = len(local) / len(rows)
    out["local_precision"] = sum(local) / len(local) if local else 0.0
    return out


def local_sweep(name: str, rows: Sequence[Row], run: Run) -> list[tuple[float, float, float]]:
    """``(threshold, coverage, precision)`` of the local tier's answers at thresholds:
    how the handler's default threshold was chosen."""
    right: list[tuple[float, bool]] = []
    for row, event in zip(rows, run.events, strict=True):
        if event is None or event.enrichment.tier != "local":
            continue
        if name == "sentiment":
            ok = sentiment_label(event) == row.labels["label"]
        else:
            predicted, actual = moderation_flagged(row, event)
            ok = predicted == actual
        right.append((event.enrichment.confidence or 0.0, ok))
    out = []
    for threshold in (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97):
        kept = [ok for conf, ok in right if conf >= threshold]
        out.append((threshold, len(kept) / len(rows), sum(kept) / len(kept) if kept else 0.0))
    return out


SCORERS: dict[str, Callable[[Sequence[Row], Run], dict[str, float]]] = {
    "sentiment": score_sentiment,
    "moderation": score_moderation,
}
READERS: dict[str, Callable[[Path, int | None], list[Row]]] = {
    "sentiment": read_sentiment,
    "moderation": read_moderation,
}


@dataclass
class Evaluation:
    """The runs of one handler over one file, scored, and the local tier's sweep."""

    runs: list[tuple[Run, dict[str, float]]]
    sweep: list[tuple[float, float, float]]
    where: str


async def evaluate(
    name: str, path: Path, settings: Settings, *, limit: int | None = None,
    options: dict[str, Any] | None = None,
) -> Evaluation:  # fmt: skip
    """The local tier alone, the cascade, then the model alone, over the same rows."""
    rows = READERS[name](path, limit)
    if not rows:
        raise ValueError(f"{path}: no rows")
    options = options or {}
    results = []
    alone = build(name, {**options, "local_threshold": 0.0}, None)
    run = await run_local_only(name, alone, rows)
    results.append((run, SCORERS[name](rows, run)))
    sweep = local_sweep(name, rows, run)
    async with model_service(settings) as (service, where):
        cascade = build(name, options, service)
        run = await run_handler("cascade (local tier, then the model)", cascade, rows, service)
        results.append((run, SCORERS[name](rows, run)))
        nolocal = build(name, {**options, "local_tier": False}, service)
        service.cache.clear()
        run = await run_handler("model only", nolocal, rows, service)
        results.append((run, SCORERS[name](rows, run)))
    return Evaluation(results, sweep, where)


class _NoModel:
    """The model port of the local tier alone: every ask is a per-event failure."""

    async def ask(self, *_: object, **__: object) -> Any:
        raise EventError("the local tier alone does not call the model")

    async def moderate(self, *_: object, **__: object) -> Any:
        raise EventError("the local tier alone does not call the model")

    def take_alerts(self) -> list[Any]:
        return []


async def run_local_only(name: str, handler: Handler, rows: Sequence[Row]) -> Run:
    """The local tier with its threshold at 0, so it answers every event it can; rows it
    cannot answer at all count as unanswered (None)."""
    handler.context = HandlerContext(handler.context.route, _NoModel())
    return await run_handler(f"local tier alone ({name})", handler, rows, None)


# -- log parsing --------------------------------------------------------------------------


def grouping_accuracy(predicted: Sequence[object], truth: Sequence[object]) -> float:
    """Share of lines whose predicted group (same predicted id) is exactly their true
    group (same true id), as in Loghub's benchmarks."""
    pred: dict[object, set[int]] = defaultdict(set)
    true: dict[object, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        pred[p].add(i)
        true[t].add(i)
    right = sum(pred[p] == true[t] for p, t in zip(predicted, truth, strict=True))
    return right / len(truth) if truth else 0.0


# -- the report ---------------------------------------------------------------------------


def report(name: str, path: Path, evaluation: Evaluation) -> str:
    """Markdown tables: quality, the local tier's share and what the model cost."""
    results, sweep, where = evaluation.runs, evaluation.sweep, evaluation.where
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
            _share(scores["local_coverage"], scores["local_precision"]),
            f"{run.per_1000(run.calls):,.1f}",
            f"{run.per_1000(run.prompt_tokens):,.0f}",
            f"{run.per_1000(run.cached_tokens):,.0f}",
            f"{run.per_1000(run.completion_tokens):,.0f}",
            f"{run.per_1000(run.usd):.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    default = getattr(HANDLERS[name], "default_threshold", None)
    lines += ["", f"The local tier's precision by threshold (the default is {default}):", "",
              "| threshold | " + " | ".join(f"{t:g}" for t, _, _ in sweep) + " |",
              "|---" + "|---:" * len(sweep) + "|",
              "| coverage | " + " | ".join(f"{c:.1%}" for _, c, _ in sweep) + " |",
              "| precision | " + " | ".join(_share(c, p) for _, c, p in sweep) + " |"]  # fmt: skip
    if name == "moderation":
        lines += ["", "Per category F1 (rows labelled for that category only):", "",
                  "| run | " + " | ".join(MODERATION_CODES.values()) + " |",
                  "|---" + "|---:" * len(MODERATION_CODES) + "|"]  # fmt: skip
        for run, scores in results:
            cells = [f"{scores['f1_' + c]:.3f}" for c in MODERATION_CODES.values()]
            lines.append(f"| {run.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _share(coverage: float, precision: float) -> str:
    return f"{precision:.3f}" if coverage else "-"


def _quality_keys(name: str, scores: dict[str, float]) -> list[str]:
    if name == "sentiment":
        return ["accuracy", "macro_f1"]
    return ["accuracy_flagged", "f1_flagged"]
