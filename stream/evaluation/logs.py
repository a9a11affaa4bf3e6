"""``sluicegate eval logs``: the ``logs`` handler over Loghub-2k, scored per system.

Every raw line of a system goes through the handler in file order, one at a time (a
route with ``ordering = "partition"``), header parsing included. Each system runs:

- with the model configured, else the simulator's heuristic templates;
- with the simulator's **teacher** (``--log-teacher`` on the Loghub files themselves):
  each model call is answered with the line's true ``EventTemplate``, so GA and PA
  measure the template store and its reuse of learned templates, not a model's guesses
  (skipped when a real model is configured: it cannot be taught);
- Drain3 with its default settings on Loghub's ``Content`` column: the baseline.

GA: share of lines whose predicted group (same template id, as emitted when the line was
processed) is exactly their true group (same EventId). PA: share of lines whose template
is the true one.
"""

from __future__ import annotations

import contextlib
import csv
import statistics
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from handlers.base import HandlerContext
from handlers.logs import LogsHandler
from handlers.logs.templates import normalize_template
from stream.config import Settings
from stream.evaluation.data import DataError, find_column, find_optional, read_table
from stream.evaluation.handlers import (
    ModelFailed,
    Progress,
    Row,
    Run,
    _NoModel,
    _tally,
    build,
    failure_summary,
    grouping_accuracy,
    run_handler,
)
from stream.model.endpoint import configured, model_service
from stream.model.service import ModelService

LOG_SYSTEMS = ("HDFS", "Apache", "OpenSSH", "Zookeeper", "Spark", "Linux", "Proxifier", "HealthApp")


@dataclass(frozen=True)
class LogScore:
    system: str
    lines: int
    templates: int
    calls: int
    ga: float
    pa: float | None  # None: the file has no templates, only groups
    local_share: float
    prompt_tokens: float
    usd: float


LINE_COLUMNS = ("line", "raw", "log", "message", "content", "text")
TEMPLATE_COLUMNS = ("EventTemplate", "template")
GROUP_COLUMNS = ("EventId", "group", "template_id", "event_id")


def log_systems(path: Path) -> list[tuple[str, Path, Path]]:
    """``(system, raw log, structured csv)`` for a Loghub folder, a system's folder or a
    system's ``*_structured_corrected.csv``; for any other .csv, .tsv or .jsonl file
    ``(its stem, the file, the file)``: its lines and labels are columns of its own."""
    if path.is_file():
        system = path.name.split("_2k")[0]
        raw = path.with_name(f"{system}_2k.log")
        if "_structured" in path.name and raw.exists():
            return [(system, raw, path)]
        return [(path.stem, path, path)]
    found = []
    for csv_path in path.rglob("*_2k.log_structured_corrected.csv"):
        system = csv_path.name.split("_2k")[0]
        found.append((system, csv_path.with_name(f"{system}_2k.log"), csv_path))
    if not found:
        raise ValueError(f"no *_2k.log_structured_corrected.csv under {path}")
    order = {name: i for i, name in enumerate(LOG_SYSTEMS)}
    return sorted(found, key=lambda f: (order.get(f[0], len(order)), f[0]))


def read_loghub(
    raw: Path, labels: Path, limit: int | None
) -> tuple[list[str], list[dict[str, str]]]:
    """The raw lines and, per line, its ``Content``, ``EventId`` and ``EventTemplate``."""
    if raw == labels:
        return read_log_table(raw, limit)
    lines = raw.read_text(encoding="utf-8", errors="replace").splitlines()[:limit]
    with labels.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[: len(lines)]
    if len(rows) != len(lines):
        raise ValueError(f"{raw.name} has {len(lines)} lines but {labels.name} {len(rows)} rows")
    missing = {"Content", "EventId", "EventTemplate"} - set(rows[0] if rows else ())
    if missing:
        raise ValueError(f"{labels.name} lacks the columns {sorted(missing)}")
    return lines, rows


def read_log_table(path: Path, limit: int | None) -> tuple[list[str], list[dict[str, str]]]:
    """A file with a line column and a template column (``<*>`` for a variable) or a
    group column (lines of one template share its value), or both; any case."""
    table = read_table(path, limit)
    line = find_column(table, LINE_COLUMNS, "log line")
    template = find_optional(table, TEMPLATE_COLUMNS)
    group = find_optional(table, GROUP_COLUMNS)
    if template is None and group is None:
        raise DataError(f"{path.name}: no label column; expected a template column "
                        f"({', '.join(TEMPLATE_COLUMNS)}) or a group column "
                        f"({', '.join(GROUP_COLUMNS)}), any case; found "
                        f"{', '.join(table.columns)}")  # fmt: skip
    lines, rows = [], []
    for i, item in enumerate(table.rows):
        text = item.get(line)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{table.where(i)}: {line} is empty or not text; a log line "
                            "is needed")  # fmt: skip
        pattern = str(item.get(template) or "") if template else ""
        lines.append(text)
        rows.append({"Content": text, "EventTemplate": pattern,
                     "EventId": str(item.get(group) or "") if group else pattern})  # fmt: skip
    return lines, rows


def drain_defaults(rows: Sequence[dict[str, str]]) -> float:
    """GA of Drain3 with its default settings on Loghub's Content column."""
    from drain3 import TemplateMiner  # type: ignore[import-untyped]  # noqa: PLC0415
    from drain3.template_miner_config import (  # type: ignore[import-untyped]  # noqa: PLC0415
        TemplateMinerConfig,
    )

    miner = TemplateMiner(None, TemplateMinerConfig())  # the defaults, without an ini file
    ids = [miner.add_log_message(r["Content"])["cluster_id"] for r in rows]
    return grouping_accuracy(ids, [r["EventId"] for r in rows])


async def run_logs(
    system: str,
    raw: Path,
    labels: Path,
    service: ModelService | None,
    limit: int | None,
    *,
    options: dict[str, Any] | None = None,
) -> LogScore:
    """Every line of a system through a fresh ``logs`` handler, in file order. Model
    failures are counted over the whole system and raised once (``ModelFailed``)."""
    lines, rows = read_loghub(raw, labels, limit)
    handler = build("logs", options or {}, service)
    if not isinstance(handler, LogsHandler):
        raise TypeError(f"the logs handler is {type(handler).__name__}")
    if service is None:
        handler.context = HandlerContext(handler.context.route, _NoModel())
    before = _tally(service)
    events = []
    progress, failed = Progress(system, len(lines)), Run(system)
    for i, line in enumerate(lines):
        row = [Row(line.encode(), {})]
        run = await run_handler(
            system, handler, row, service, first_offset=i, progress=progress, check=False
        )
        events.append(run.events[0])
        failed.failures.update(run.failures)
        for kind, text in run.first_error.items():
            failed.first_error.setdefault(kind, text)
    if failed.failures:
        raise ModelFailed(failure_summary(failed, service, len(lines)))
    after = _tally(service)
    ids = [e.enrichment.answer["template_id"] if e else None for e in events]
    templates = [e.enrichment.answer["template"] if e else None for e in events]
    truth = [normalize_template(r["EventTemplate"]) for r in rows]
    n = len(rows)
    return LogScore(
        system=system, lines=n, templates=len({r["EventId"] for r in rows}),
        calls=handler.model_calls, ga=grouping_accuracy(ids, [r["EventId"] for r in rows]),
        pa=sum(p == t for p, t in zip(templates, truth, strict=True)) / n if any(truth) else None,
        local_share=sum(e is not None and e.enrichment.tier == "local" for e in events) / n,
        prompt_tokens=after[1] - before[1], usd=after[4] - before[4],
    )  # fmt: skip


@contextlib.asynccontextmanager
async def taught_service(settings: Settings, teacher: Path) -> AsyncIterator[ModelService]:
    """The simulator in-process with ``teacher`` as its log teacher, and a client of it."""
    from stream.simulator.server import running_simulator  # noqa: PLC0415
    from stream.simulator.settings import SimulatorSettings  # noqa: PLC0415

    sim = SimulatorSettings(
        port=0, latency_median_ms=50.0, rpm=0, tpm=0, seed=7, log_teacher=str(teacher)
    )
    async with running_simulator(sim) as url:
        model = settings.model.model_copy(update={"base_url": url, "api_key": SecretStr("sim")})
        service = ModelService(settings.model_copy(update={"model": model}))
        try:
            yield service
        finally:
            await service.aclose()


async def report_logs(
    path: Path, settings: Settings, *, limit: int | None = None,
    options: dict[str, Any] | None = None,
) -> str:  # fmt: skip
    """GA, PA and model calls per system, with the model (or the simulator's heuristics)
    and with the simulator's teacher, next to Drain3 with its defaults."""
    systems = log_systems(path)
    baseline = [drain_defaults(read_loghub(raw, lab, limit)[1]) for _, raw, lab in systems]
    async with model_service(settings) as (service, where):
        plain = [
            await run_logs(s, raw, lab, service, limit, options=options) for s, raw, lab in systems
        ]
    taught: list[LogScore] = []
    loghub = all(raw != lab for _, raw, lab in systems)  # the teacher reads Loghub's files
    if not configured(settings) and loghub:
        async with taught_service(settings, path) as service:
            taught = [
                await run_logs(s, raw, lab, service, limit, options=options)
                for s, raw, lab in systems
            ]
    name = "simulator heuristics" if not configured(settings) else where
    head = (
        f"| system | lines | true templates | Drain3 defaults GA | GA ({name}) | PA "
        "| calls / templates | GA (teacher) | PA (teacher) | model calls (teacher) "
        "| calls / templates (teacher) | answered locally (teacher) | prompt tok | $ |"
    )
    out = [f"### logs: `{path.name}` (model: {where}; lines in file order, one at a time)",
           "", head, "|---" + "|---:" * 13 + "|"]  # fmt: skip
    for i, p in enumerate(plain):
        t = taught[i] if taught else None
        out.append(
            f"| {p.system} | {p.lines} | {p.templates} | {baseline[i]:.3f} | {p.ga:.3f} "
            f"| {_pa(p.pa)} | {p.calls / p.templates:.2f} | " + (
                f"{t.ga:.3f} | {_pa(t.pa)} | {t.calls} | {t.calls / t.templates:.2f} "
                f"| {t.local_share:.1%} | {t.prompt_tokens:,.0f} | {t.usd:.4f} |"
                if t else f"- | - | - | - | {p.local_share:.1%} | {p.prompt_tokens:,.0f} "
                f"| {p.usd:.4f} |"
            )
        )  # fmt: skip
    if len(plain) > 1:
        out += _averages(plain, taught, baseline)
    return "\n".join(out)


def _pa(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mean_pa(scores: Sequence[LogScore]) -> float:
    known = [s.pa for s in scores if s.pa is not None]
    return statistics.fmean(known) if known else 0.0


def _averages(plain: list[LogScore], taught: list[LogScore], baseline: list[float]) -> list[str]:
    avg = statistics.fmean
    ratio = sum(p.calls for p in plain) / sum(p.templates for p in plain)
    row = (f"| **average / total** | {sum(p.lines for p in plain)} "
           f"| {sum(p.templates for p in plain)} | {avg(baseline):.3f} "
           f"| **{avg(p.ga for p in plain):.3f}** | {_mean_pa(plain):.3f} "
           f"| {ratio:.2f} | ")  # fmt: skip
    if not taught:
        return [row + "- | - | - | - | - | - | - |"]
    calls, templates = sum(t.calls for t in taught), sum(t.templates for t in taught)
    ga, pa = avg(t.ga for t in taught), _mean_pa(taught)
    row += (
        f"**{ga:.3f}** | **{pa:.3f}** | {calls} | **{calls / templates:.2f}** "
        f"| {avg(t.local_share for t in taught):.1%} "
        f"| {sum(t.prompt_tokens for t in taught):,.0f} | {sum(t.usd for t in taught):.4f} |"
    )
    below = [t.system for t, b in zip(taught, baseline, strict=True) if t.ga < b]

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [row, "", "Goals, with the teacher: "
            f"GA >= Drain3's defaults on every system ({met(not below)}"
            f"{': below on ' + ', '.join(below) if below else ''}); average GA >= 0.90 "
            f"({met(ga >= 0.90)}: {ga:.3f}); average PA >= 0.85 ({met(pa >= 0.85)}: {pa:.3f}); "
            f"model calls <= 1.2x the distinct templates ({met(calls <= 1.2 * templates)}: "
            f"{calls / templates:.2f}x)."]  # fmt: skip
