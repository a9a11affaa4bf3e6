"""``sluicegate eval HANDLER --data FILE --teacher``: the learned local tier over a stream.

The file is streamed in its order through the cascade a route runs by default (the
learned tier first, the model for what it defers), with the simulator in teacher mode
(``simulate-nano --teacher FILE``: it answers the file's label, flipped on a seeded
share ``--teacher-noise``). So the model is one of known quality, and every figure is
measured against it: this is not GPT-5.4 nano. The same rows then go to the model alone.

Reported by windows of events (500 by default): the share answered locally; on the local
answers, agreement with the teacher (what the tier is calibrated against, at most about
1 - noise on texts it has not seen) and with the noise-free label; accuracy of all
answers against the labels, beside the model alone's; events sent to the model and
dollars per 1,000 events, beside the model alone's.

Events go in order, ``chunk`` at a time (concurrently, so micro-batching works as in a
stream), and the tier learns each chunk's answers before the next chunk: training lags
the stream by at most one chunk, and the run is reproducible.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from handlers.enrich import EnrichingHandler
from schemas.enriched import EnrichedEvent
from schemas.errors import EventError
from schemas.records import SourceRecord
from stream.config import Settings
from stream.evaluation.handlers import (
    READERS,
    Row,
    build,
    moderation_flagged,
    sentiment_label,
)
from stream.model.endpoint import configured
from stream.model.service import ModelService
from stream.simulator import teacher as teachers

SEED = 7
# The teacher labels one field per file (sentiment; moderation's verdict and categories).
# The other enum fields of a sentiment answer (intent) it answers with the simulator's
# keyword heuristic, which is no model of known quality: under the teacher the student
# leaves them empty rather than being measured against that heuristic.
TEACHER_OPTIONS: dict[str, dict[str, Any]] = {
    "sentiment": {"local_may_omit": ["phrases", "intent"]}
}


@dataclass
class Step:
    """One event of the stream: who answered, and whether the answer was right."""

    local: bool
    dead: bool  # dead-lettered: counts as wrong
    right: bool  # against the file's label
    teacher_agrees: bool  # against the (noisy) teacher's label
    usd: float


@dataclass
class Window:
    start: int
    events: int
    local_share: float
    local_teacher_agreement: float | None
    local_label_agreement: float | None
    accuracy: float
    model_only_accuracy: float
    model_per_1000: float
    usd_per_1000: float
    model_only_usd_per_1000: float
    threshold: float | None = None

    @property
    def cost_ratio(self) -> float:
        alone = self.model_only_usd_per_1000
        return self.usd_per_1000 / alone if alone else 0.0


@dataclass
class TeacherRun:
    name: str
    path: Path
    noise: float
    window: int
    cascade: list[Step] = field(default_factory=list)
    model_only: list[Step] = field(default_factory=list)
    thresholds: list[float | None] = field(default_factory=list)  # per event, when decided
    trained: int = 0

    def windows(self) -> list[Window]:
        w, last = self.window, len(self.thresholds) - 1
        return [
            summarize(s, self.cascade[s : s + w], self.model_only[s : s + w],
                      self.thresholds[min(last, s + w - 1)] if self.thresholds else None)
            for s in range(0, len(self.cascade), w)
        ]  # fmt: skip

    def after(self, first: int) -> Window | None:
        """All events after the first ``first`` as one window (None if there are none)."""
        if len(self.cascade) <= first:
            return None
        return summarize(first, self.cascade[first:], self.model_only[first:], None)


def summarize(
    start: int, steps: Sequence[Step], alone: Sequence[Step], threshold: float | None
) -> Window:
    n = max(1, len(steps))
    local = [s for s in steps if s.local]
    agreed = sum(s.teacher_agrees for s in local)
    return Window(
        start=start,
        events=len(steps),
        local_share=len(local) / n,
        local_teacher_agreement=agreed / len(local) if local else None,
        local_label_agreement=sum(s.right for s in local) / len(local) if local else None,
        accuracy=sum(s.right for s in steps) / n,
        model_only_accuracy=sum(s.right for s in alone) / max(1, len(alone)),
        model_per_1000=sum(not s.local and not s.dead for s in steps) * 1000 / n,
        usd_per_1000=sum(s.usd for s in steps) * 1000 / n,
        model_only_usd_per_1000=sum(s.usd for s in alone) * 1000 / max(1, len(alone)),
        threshold=threshold,
    )


def _truth(name: str, row: Row, label: teachers.Label | None) -> tuple[object, object]:
    """(the file's label, the teacher's label) in the handler's terms."""
    if name == "sentiment":
        return row.labels["label"], None if label is None else label.value
    actual = any(v == 1 for v in row.labels.values())
    return actual, None if label is None else label.flagged


def _predicted(name: str, row: Row, event: EnrichedEvent | None) -> object:
    if name == "sentiment":
        return sentiment_label(event)
    return moderation_flagged(row, event)[0]


async def _pass(
    name: str, handler: EnrichingHandler, rows: Sequence[Row], teacher: teachers.Teacher,
    run: TeacherRun, *, steps: list[Step], chunk: int, track: bool,
) -> None:  # fmt: skip
    async def one(i: int, row: Row) -> EnrichedEvent | None:
        record = SourceRecord("eval", 0, i, None, row.value)
        try:
            result = await handler.handle(record)
        except EventError:
            return None
        return None if result.value is None else EnrichedEvent.model_validate_json(result.value)

    for begin in range(0, len(rows), chunk):
        part = rows[begin : begin + chunk]
        if track and handler.learner is not None:
            run.thresholds += [handler.learner.stats.threshold] * len(part)
        events = await asyncio.gather(*(one(begin + j, r) for j, r in enumerate(part)))
        for row, event in zip(part, events, strict=True):
            text = _text(row)
            truth, taught = _truth(name, row, teacher.label(text))
            predicted = _predicted(name, row, event)
            steps.append(Step(
                local=event is not None and event.enrichment.tier == "local",
                dead=event is None,
                right=predicted == truth,
                teacher_agrees=predicted == taught,
                usd=0.0 if event is None else event.enrichment.cost_usd,
            ))  # fmt: skip
        if handler.learner is not None:
            await handler.learner.drain()
    if handler.learner is not None:
        run.trained = handler.learner.stats.trained


def _text(row: Row) -> str:
    import orjson  # noqa: PLC0415

    value = orjson.loads(row.value)
    return str(value["text"])


async def stream_with_teacher(
    name: str, path: Path, settings: Settings, *, noise: float = 0.1, window: int = 500,
    limit: int | None = None, chunk: int = 50, options: dict[str, Any] | None = None,
) -> TeacherRun:  # fmt: skip
    """The cascade (learned tier, then the teacher) over the file in order, then the
    teacher alone over the same rows."""
    if configured(settings):
        raise ValueError(
            "--teacher measures against the simulator in teacher mode; unset model.api_key "
            "(OPENAI_API_KEY) and model.base_url"
        )
    from stream.simulator.server import running_simulator  # noqa: PLC0415
    from stream.simulator.settings import SimulatorSettings  # noqa: PLC0415

    options = {**TEACHER_OPTIONS.get(name, {}), **(options or {})}
    rows = READERS[name](path, limit)
    if not rows:
        raise ValueError(f"{path}: no rows")
    teacher = teachers.load(path, noise, SEED)
    run = TeacherRun(name, path, noise, window)
    sim = SimulatorSettings(port=0, latency_median_ms=5, rpm=0, tpm=0, seed=SEED,
                            teacher=str(path), teacher_noise=noise)  # fmt: skip
    # Each pass gets a simulator of its own: the second would otherwise find the first's
    # prompts in the simulated prompt cache and be billed for them at the cached price.
    # Both batch alike: a batch waits its full 20 ms (no idle cut-off), so the student's
    # training in a worker thread cannot split the cascade's batches.
    for cascade_pass in (True, False):
        async with running_simulator(sim) as url:
            model = settings.model.model_copy(update={
                "base_url": url, "api_key": SecretStr("simulator"), "batch_wait_ms": 20,
                "batch_idle_ms": 0,
            })  # fmt: skip
            service = ModelService(settings.model_copy(update={"model": model}))
            try:
                opts = options if cascade_pass else {**options, "local_tier": False}
                handler = _enriching(build(name, opts, service))
                steps = run.cascade if cascade_pass else run.model_only
                await _pass(name, handler, rows, teacher, run, steps=steps, chunk=chunk,
                            track=cascade_pass)  # fmt: skip
            finally:
                await service.aclose()
    return run


def _enriching(handler: object) -> EnrichingHandler:
    if not isinstance(handler, EnrichingHandler):
        raise TypeError(f"{handler!r} is not an enriching handler")
    return handler


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def report_teacher(run: TeacherRun, plot: Path | None = None) -> str:
    """Markdown: one row per window, then the events after the first 1,000."""
    head = ["events", "local share", "agreement w/ teacher (local)", "agreement w/ label (local)",
            "accuracy", "model-only accuracy", "model events /1k", "$ /1k", "model-only $ /1k",
            "$ ratio", "threshold at end"]  # fmt: skip
    lines = [
        f"### {run.name}, learned tier: `{run.path.name}` ({len(run.cascade)} events in file "
        f"order, teacher noise {run.noise:g}, {run.trained} answers learned)",
        "",
        "| " + " | ".join(head) + " |",
        "|---" + "|---:" * (len(head) - 1) + "|",
    ]
    rows = [(f"{w.start + 1}-{w.start + w.events}", w) for w in run.windows()]
    late = run.after(1000)
    if late is not None:
        rows.append((f"after the first 1,000 ({late.events})", late))
    for label, w in rows:
        lines.append("| " + " | ".join([
            label, f"{w.local_share:.1%}", _pct(w.local_teacher_agreement),
            _pct(w.local_label_agreement), f"{w.accuracy:.3f}", f"{w.model_only_accuracy:.3f}",
            f"{w.model_per_1000:,.0f}", f"{w.usd_per_1000:.4f}", f"{w.model_only_usd_per_1000:.4f}",
            f"{w.cost_ratio:.2f}", _pct(w.threshold),
        ]) + " |")  # fmt: skip
    if plot is not None:
        lines += ["", f"![learned tier over the stream]({plot.name})"]
    return "\n".join(lines)


def plot_teacher(runs: Sequence[TeacherRun], path: Path, every: int = 100) -> None:
    """A PNG of the curves over the stream (windows of ``every`` events): local share,
    agreement with the teacher on local answers, accuracy, and $ against model-only."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise ValueError("the plot needs matplotlib (the 'bench' extra)") from exc
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3.2 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        points = [summarize(s, run.cascade[s : s + every], run.model_only[s : s + every], None)
                  for s in range(0, len(run.cascade), every)]  # fmt: skip
        x = [p.start + p.events for p in points]
        ax.plot(x, [p.local_share for p in points], label="share local")
        agreement = [p.local_teacher_agreement for p in points]
        ax.plot(x, agreement, label="agreement w/ teacher (local)")
        ax.plot(x, [p.accuracy for p in points], label="accuracy")
        ax.plot(x, [p.model_only_accuracy for p in points], "--", label="model-only accuracy")
        ax.plot(x, [p.cost_ratio for p in points], ":", label=r"\$ / model-only \$")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{run.name}: {run.path.name} (teacher noise {run.noise:g})")
        ax.set_xlabel("events")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
