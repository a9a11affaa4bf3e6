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
import sys
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
from schemas.errors import EventError, SluicegateError
from schemas.records import SourceRecord
from stream.config import Settings
from stream.errors import ConfigError
from stream.evaluation.data import (
    DataError,
    Table,
    find_column,
    find_optional,
    flag,
    read_table,
    skip_unknown,
    warn,
    with_text,
)
from stream.model.endpoint import model_service
from stream.model.errors import (
    BudgetPaused,
    ModelCircuitOpen,
    ModelError,
    ModelRateLimited,
    ModelRequestRejected,
    ModelTimeout,
    ModelUnavailable,
)
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
    failures: Counter[str] = field(default_factory=Counter)  # model failures by kind
    first_error: dict[str, str] = field(default_factory=dict)

    def per_1000(self, value: float) -> float:
        return value * 1000 / max(1, len(self.events))

    def local_share(self) -> float:
        done = [e for e in self.events if e is not None]
        return sum(e.enrichment.tier == "local" for e in done) / max(1, len(done))


# -- reading the datasets -----------------------------------------------------------------


SENTIMENT_LABELS = ("positive", "negative", "neutral", "frustrated")
TEXT_COLUMNS = ("text", "review", "content", "body", "sentence", "prompt", "comment")
ID_COLUMNS = ("id", "original_index", "review_id")


def read_sentiment(path: Path, limit: int | None) -> list[Row]:
    """A text column and a label column (positive, negative, neutral or frustrated, any
    case; frustrated is scored as negative); rows with other labels are skipped."""
    table = read_table(path, limit)
    text = find_column(table, TEXT_COLUMNS, "text")
    label = find_column(table, ("label_text", "sentiment", "label"), "label")
    ident = find_optional(table, ID_COLUMNS)
    texts = [table.rows[i] for i in with_text(table, text)]
    skip_unknown(path, Counter(str(r.get(label) or "") for r in texts), SENTIMENT_LABELS)
    rows = []
    for r in texts:
        gold = str(r.get(label) or "").strip().lower()
        if gold not in SENTIMENT_LABELS:
            continue
        event = {"id": r.get(ident) if ident else None, "text": r.get(text) or ""}
        rows.append(Row(orjson.dumps(event), {"label": _gold_sentiment(gold)}))
    return rows


def _gold_sentiment(label: str) -> str:
    return "negative" if label == "frustrated" else label


def read_moderation(path: Path, limit: int | None) -> list[Row]:
    """A text column and 0/1 columns per category, named by code (S, H, V, HR, SH, S3,
    H2, V2) or by category (sexual, hate, ..., any case); an empty cell is unlabelled."""
    table = read_table(path, limit)
    text = find_column(table, ("prompt", *TEXT_COLUMNS[:-1]), "text")
    names = {code.lower(): code for code in MODERATION_CODES}
    names |= {cat.lower(): code for code, cat in MODERATION_CODES.items()}
    names |= {cat.lower().replace("/", "_").replace("-", "_"): code
              for code, cat in MODERATION_CODES.items()}  # fmt: skip
    categories = {c: names[c.lower()] for c in table.columns if c.lower() in names}
    if not categories:
        expected = ", ".join(f"{code} ({cat})" for code, cat in MODERATION_CODES.items())
        raise DataError(f"{path.name}: no category label column; expected any of "
                        f"{expected} (any case); found "
                        f"{', '.join(table.columns) or 'no columns'}")  # fmt: skip
    ignored = [c for c in table.columns if c not in categories and c != text
               and c.lower() not in ID_COLUMNS]  # fmt: skip
    if ignored:
        warn(f"{path.name}: columns ignored (not a category of the taxonomy): "
             f"{', '.join(ignored)}")  # fmt: skip
    rows = []
    for i in with_text(table, text):
        item, labels = table.rows[i], {}
        for column, code in categories.items():
            value = flag(item.get(column), table, column, i)
            if value is not None:
                labels[code] = value
        rows.append(Row(orjson.dumps({"text": item.get(text) or ""}), labels))
    return rows


def task_fields(handler: Handler) -> dict[str, dict[str, Any]]:
    """The top-level properties of a task's answer, by name, with their JSON schema."""
    make_task = getattr(handler, "make_task", None)
    if make_task is None:
        raise DataError(f"the {handler.name} handler declares no task")
    schema = make_task().output.model_json_schema()
    props: dict[str, dict[str, Any]] = schema.get("properties", {})
    return props


def read_task(path: Path, limit: int | None, fields: dict[str, dict[str, Any]]) -> list[Row]:
    """The event is the row without its label columns; a label column is named after a
    property of the task's answer (or ``expected_<name>``, any case). Enum labels are
    matched case-insensitively; cells that are no value of the enum are skipped."""
    table = read_table(path, limit)
    labels: dict[str, str] = {}
    for name in fields:
        column = find_optional(table, (f"expected_{name}", name))
        if column is not None:
            labels[column] = name
    if not labels:
        found = ", ".join(table.columns) or "no columns"
        raise DataError(f"{path.name}: no label column; expected a column named after a "
                        f"field of the task's answer ({', '.join(fields)}, or "
                        f"expected_<field>; any case); found {found}")  # fmt: skip
    rows: list[Row] = []
    unknown: dict[str, Counter[str]] = defaultdict(Counter)
    for i, item in enumerate(table.rows):
        event = {k: v for k, v in item.items() if k not in labels}
        gold: dict[str, Any] = {}
        for column, name in labels.items():
            value = item.get(column)
            if value is None or value == "":
                continue
            known = _task_value(fields[name], value, table, column, i)
            if known is _UNKNOWN:
                unknown[name][str(value)] += 1
            else:
                gold[name] = known
        rows.append(Row(orjson.dumps(event), gold))
    for name, counts in unknown.items():
        enum = [str(v) for v in fields[name].get("enum", [])]
        skip_unknown(path, counts, [v.lower() for v in enum], what=f"{name} label cells")
    return rows


_UNKNOWN = object()


def _task_value(schema: dict[str, Any], value: Any, table: Table, column: str, i: int) -> Any:
    """A label cell as the answer would hold it: an enum value (any case), a boolean,
    a number, else the text."""
    if "enum" in schema:
        by_lower = {str(v).lower(): v for v in schema["enum"]}
        return by_lower.get(str(value).strip().lower(), _UNKNOWN)
    kind = schema.get("type")
    if kind == "boolean":
        return bool(flag(value, table, column, i))
    if kind in ("number", "integer"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"{table.where(i)}: {column} = {value!r}; a number is expected"
            ) from None
    return value


# -- running a handler --------------------------------------------------------------------


class ModelFailed(SluicegateError):
    """The model did not answer some rows; the message says how it failed."""


# How each way a model call can fail reads in the summary, most telling first.
FAILURE_KINDS: tuple[tuple[type[ModelError], str], ...] = (
    (ModelRequestRejected, "rejected by the server as a bad request (a configuration "
     "fault: check model.model, model.base_url and model.output_mode)"),
    (ModelTimeout, "timed out (model.timeout_s)"),
    (ModelRateLimited, "rate limited by the server"),
    (ModelUnavailable, "server errors or no connection"),
    (BudgetPaused, "stopped by the daily budget"),
    (ModelCircuitOpen, "not sent: the circuit breaker was open (it opens after "
     "consecutive failed requests: see the requests sent below)"),
)  # fmt: skip


def failure_kind(exc: ModelError) -> str:
    return next((text for cls, text in FAILURE_KINDS if isinstance(exc, cls)),
                type(exc).__name__)  # fmt: skip


def failure_summary(run: Run, service: ModelService | None, total: int) -> str:
    """What failed, by kind with the first message of each, and the requests' outcomes."""
    parts = [f"the model failed on {sum(run.failures.values())} of {total} rows ({run.name}):"]
    order = [text for _, text in FAILURE_KINDS]
    kinds = sorted(run.failures, key=lambda k: order.index(k) if k in order else -1)
    parts += [f"  {run.failures[k]} x {k}; first: {run.first_error[k][:400]}" for k in kinds]
    if service is not None:
        requests = service.client.requests
        tally = ", ".join(f"{n} {status}" for status, n in sorted(requests.items()))
        parts.append(f"  requests sent: {tally or 'none'}")
        failed = {status: n for status, n in requests.items() if status != "ok"}
        if failed and BREAKER_OPEN in kinds:
            outcomes = sorted(failed.items())
            cause = ", ".join(f"{n} {REQUEST_OUTCOMES.get(s, s)}" for s, n in outcomes)
            parts.append(f"  the breaker opened after failed requests: {cause}")
    return "\n".join(parts)


BREAKER_OPEN = dict(FAILURE_KINDS)[ModelCircuitOpen]
REQUEST_OUTCOMES = {"timeout": "timed out (model.timeout_s)", "rate_limited": "rate limited",
                    "error": "server errors, refusals or no connection"}  # fmt: skip


class Progress:
    """A line on stderr at most every ``every`` seconds (5) of a long pass (none for a pass
    shorter than that), so a run of thousands of rows shows it is moving without flooding."""

    def __init__(
        self, name: str, total: int, *, every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.name, self.total, self.done = name, total, 0
        self.every = PROGRESS_EVERY_S if every is None else every
        self.clock = clock
        self.started = self.last = clock()

    def step(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            print(f"sluicegate eval: {self.name}: {self.done}/{self.total} rows "
                  f"({rate:.1f}/s)", file=sys.stderr)  # fmt: skip


PROGRESS_EVERY_S = 5.0


async def run_handler(
    name: str,
    handler: Handler,
    rows: Sequence[Row],
    service: ModelService | None,
    *,
    concurrency: int = 256,
    first_offset: int = 0,
    progress: Progress | None = None,
    check: bool = True,
) -> Run:
    """Every row through the handler as the runtime would call it (``try_now`` first,
    then ``handle``), many at a time so micro-batching works as in a stream. A model
    failure (not a per-event fault) is counted by kind and raised as ``ModelFailed``
    once every row is done (``check``), so the message says what failed across the pass."""
    run = Run(name)
    before = _tally(service)
    gate = asyncio.Semaphore(concurrency)
    progress = progress or Progress(name, len(rows))

    async def one(i: int, row: Row) -> EnrichedEvent | None:
        record = SourceRecord("eval", 0, first_offset + i, None, row.value)
        try:
            result = handler.try_now(record) if handler.answers_now else None
            if result is None:
                async with gate:
                    result = await handler.handle(record)
        except EventError:
            return None
        except ModelError as exc:
            kind = failure_kind(exc)
            run.failures[kind] += 1
            run.first_error.setdefault(kind, str(exc))
            return None
        finally:
            progress.step()
        if result.value is None:  # an explicit skip
            return None
        return EnrichedEvent.model_validate_json(result.value)

    started = time.perf_counter()
    run.events = list(await asyncio.gather(*(one(i, r) for i, r in enumerate(rows))))
    run.seconds = time.perf_counter() - started
    if check and run.failures:
        raise ModelFailed(failure_summary(run, service, len(rows)))
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


def route_options(
    settings: Settings, handler: str, route: str | None, config: Path | None
) -> dict[str, Any]:
    """The options of the config's route that runs ``handler`` (``route`` names it when
    several do); none: the handler's defaults (a ``task`` needs its route)."""
    where = str(config) if config is not None else "the configuration"
    if route is not None:
        named = [r for r in settings.routes if r.name == route]
        if not named:
            known = ", ".join(r.name for r in settings.routes) or "none"
            raise ConfigError(f"--route {route}: no such route in {where}; routes: {known}")
        if named[0].handler != handler:
            raise ConfigError(f"--route {route} runs the {named[0].handler} handler, "
                              f"not {handler}")  # fmt: skip
        return dict(named[0].options)
    matching = [r for r in settings.routes if r.handler == handler]
    if len(matching) > 1:
        names = ", ".join(r.name for r in matching)
        raise ConfigError(f"routes {names} of {where} all run {handler}: choose one with "
                          "--route NAME")  # fmt: skip
    if matching:
        return dict(matching[0].options)
    if handler == "task":
        raise ConfigError(f"eval task: {where} has no route with handler = \"task\"; "
                          "give -c CONFIG with the task's route (instruction, schema)")  # fmt: skip
    return {}


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


def _same(predicted: Any, gold: Any) -> bool:
    if isinstance(gold, float) and isinstance(predicted, int | float):
        return float(predicted) == gold
    if isinstance(gold, str) and isinstance(predicted, str):
        return predicted.strip().lower() == gold.strip().lower()
    return bool(predicted == gold)


def score_task(rows: Sequence[Row], run: Run) -> dict[str, float]:
    """Per field of the answer: the share of rows labelled for it answered with the
    label (enums and text compared case-insensitively); ``exact``: every labelled field."""
    out: dict[str, float] = {}
    fields = sorted({name for r in rows for name in r.labels})
    for name in fields:
        pairs = [(e, r.labels[name]) for r, e in zip(rows, run.events, strict=True)
                 if name in r.labels]  # fmt: skip
        right = sum(e is not None and _same(e.enrichment.answer.get(name), g) for e, g in pairs)
        out[f"accuracy_{name}"] = right / len(pairs)
    exact = [e is not None and all(_same(e.enrichment.answer.get(k), v)
                                   for k, v in r.labels.items())
             for r, e in zip(rows, run.events, strict=True)]  # fmt: skip
    out["exact"] = sum(exact) / len(rows)
    answered = [e for e in run.events if e is not None]
    out["answered"] = len(answered) / len(rows)
    out["local_coverage"] = sum(e.enrichment.tier == "local" for e in answered) / len(rows)
    out["local_precision"] = 0.0
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
    """The local tier alone, the cascade, then the model alone, over the same rows (a
    ``task`` has no local tier: the model alone). ``options``: the route's handler options."""
    options = options or {}
    if name == "task":
        return await evaluate_task(path, settings, limit=limit, options=options)
    rows = READERS[name](path, limit)
    if not rows:
        raise DataError(f"{path.name}: no labelled rows")
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


async def evaluate_task(
    path: Path, settings: Settings, *, limit: int | None, options: dict[str, Any]
) -> Evaluation:
    rows = read_task(path, limit, task_fields(build("task", options, None)))
    if not rows:
        raise DataError(f"{path.name}: no labelled rows")
    async with model_service(settings) as (service, where):
        run = await run_handler("model", build("task", options, service), rows, service)
    return Evaluation([(run, score_task(rows, run))], [], where)


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
    if sweep:
        lines += ["", f"The local tier's precision by threshold (the default is {default}):", "",
                  "| threshold | " + " | ".join(f"{t:g}" for t, _, _ in sweep) + " |",
                  "|---" + "|---:" * len(sweep) + "|",
                  "| coverage | " + " | ".join(f"{c:.1%}" for _, c, _ in sweep) + " |",
                  "| precision | "
                  + " | ".join(_share(c, p) for _, c, p in sweep) + " |"]  # fmt: skip
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
    if name == "task":
        return [k for k in scores if k.startswith("accuracy_")] + ["exact", "answered"]
    return ["accuracy_flagged", "f1_flagged"]
