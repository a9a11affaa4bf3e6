"""Log template grouping on Loghub-2k (corrected): accuracy, model calls, time per line,
and the leave-systems-out choice of the store's settings.

Each system's 2,000 raw lines are streamed once, in file order, through ``HeaderParser``
and ``TemplateStore`` as the ``logs`` handler runs them; a miss is one model call,
answered directly (no HTTP) by one of:

- ``teacher``: the line's ground-truth ``EventTemplate`` (what ``simulate-nano
  --log-teacher`` answers), so GA and PA measure the store, not a model's guesses;
- ``simulator``: the simulator's heuristic templater (what it answers without a teacher);
- ``none``: no usable answer (the budget's local-only mode), so Drain3's templates and
  its settings alone decide the groups.

Reported per system: GA (lines whose predicted group, same template id, is exactly their
true group, same EventId), PA (lines whose template is the true one), model calls against
true templates, p99 and max time per line (header, Drain3, template fit; the model's
answer excluded), and Drain3 with its default settings on the Loghub ``Content`` column
(GA), the baseline.

``--tune`` picks the settings on some systems and checks them on the others: for each
fold of held-out systems, the grid point with the best average GA on the rest (ties:
fewer calls) is scored on the held-out ones; the cross-validated average is those
held-out scores, next to the all-in average (the best point on all systems).

Usage: ``python -m tests.bench.log_grouping [--data ../shared/datasets/logs] [--tune]``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import statistics
import string
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from handlers.logs.header import HeaderParser
from handlers.logs.store import Miss, StoreConfig, TemplateStore
from handlers.logs.templates import normalize_template
from stream.simulator import oracle

SYSTEMS = ("HDFS", "Apache", "OpenSSH", "Zookeeper", "Spark", "Linux", "Proxifier", "HealthApp")
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "logs"
Model = Callable[[str, str], str | None]  # (content, true template) -> the answer's template


@dataclass(frozen=True)
class Score:
    system: str
    lines: int
    templates: int
    calls: int
    ga: float
    pa: float
    p99_ms: float
    max_ms: float
    cpu_p99_ms: float  # this thread's CPU time: what the line costs, without preemption
    cpu_max_ms: float


@dataclass(frozen=True)
class System:
    name: str
    raw: list[str]
    contents: list[str]  # Loghub's own Content column (for the Drain3 baseline)
    truth_ids: list[str]
    truth: list[str]


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of lines whose predicted group is exactly their true group."""
    pred_groups: dict[Hashable, set[int]] = defaultdict(set)
    true_groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    right = sum(pred_groups[p] == true_groups[t] for p, t in zip(predicted, truth, strict=True))
    return right / len(truth) if truth else 0.0


def teacher_model(content: str, truth: str) -> str:
    return truth


def simulator_model(content: str, truth: str) -> str:
    return oracle.log_line(content).template


def no_model(content: str, truth: str) -> None:
    """No usable answer (the budget's local-only mode): Drain's templates alone."""
    return


MODELS: dict[str, Model] = {
    "teacher": teacher_model,
    "simulator": simulator_model,
    "none": no_model,
}


def load(folder: Path, system: str) -> System:
    raw = (folder / system / f"{system}_2k.log").read_text(errors="replace").splitlines()
    with (folder / system / f"{system}_2k.log_structured_corrected.csv").open() as f:
        rows = list(csv.DictReader(f))
    return System(
        system,
        raw,
        [r["Content"] for r in rows],
        [r["EventId"] for r in rows],
        [normalize_template(r["EventTemplate"]) for r in rows],
    )


def run_system(system: System, config: StoreConfig, model: Model) -> Score:
    parser = HeaderParser()
    store = TemplateStore(config)
    ids: list[str] = []
    emitted: list[str] = []
    times: list[float] = []
    calls = 0
    cpu: list[float] = []
    for line, truth in zip(system.raw, system.truth, strict=True):
        started, cpu_started = time.perf_counter(), time.thread_time()
        content = parser.parse(line).content
        found = store.lookup(content)
        if isinstance(found, Miss):
            spent, cpu_spent = time.perf_counter() - started, time.thread_time() - cpu_started
            calls += 1
            answer = model(content, truth)  # the model's time is not the store's
            started, cpu_started = time.perf_counter() - spent, time.thread_time() - cpu_spent
            found = store.learn(content, answer, found.cluster)
        times.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - cpu_started)
        ids.append(found.template_id)
        emitted.append(found.template)
    times.sort()
    cpu.sort()
    return Score(
        system=system.name,
        lines=len(ids),
        templates=len(set(system.truth_ids)),
        calls=calls,
        ga=grouping_accuracy(ids, system.truth_ids),
        pa=sum(e == t for e, t in zip(emitted, system.truth, strict=True)) / len(ids),
        p99_ms=times[int(0.99 * (len(times) - 1))] * 1000,
        max_ms=times[-1] * 1000,
        cpu_p99_ms=cpu[int(0.99 * (len(cpu) - 1))] * 1000,
        cpu_max_ms=cpu[-1] * 1000,
    )


def drain_defaults(system: System) -> float:
    """GA of Drain3 with its default settings on Loghub's Content column: the baseline."""
    from drain3 import TemplateMiner  # type: ignore[import-untyped]  # noqa: PLC0415
    from drain3.template_miner_config import (  # type: ignore[import-untyped]  # noqa: PLC0415
        TemplateMinerConfig,
    )

    miner = TemplateMiner(None, TemplateMinerConfig())  # the defaults, without an ini file
    ids = [miner.add_log_message(c)["cluster_id"] for c in system.contents]
    return grouping_accuracy(ids, system.truth_ids)


def table(scores: Sequence[Score], baseline: dict[str, float]) -> str:
    head = (
        "| system | GA | PA | model calls | true templates | calls / templates "
        "| Drain3 defaults GA | p99 ms/line | max ms/line | CPU p99 ms | CPU max ms |"
    )
    rows = [head, "|---" + "|---:" * 10 + "|"]
    rows.extend(
        f"| {s.system} | {s.ga:.3f} | {s.pa:.3f} | {s.calls} | {s.templates} "
        f"| {s.calls / s.templates:.2f} | {baseline[s.system]:.3f} | {s.p99_ms:.2f} "
        f"| {s.max_ms:.2f} | {s.cpu_p99_ms:.2f} | {s.cpu_max_ms:.2f} |"
        for s in scores
    )
    k, calls, templates = (
        len(scores),
        sum(s.calls for s in scores),
        sum(s.templates for s in scores),
    )
    rows.append(
        f"| **average / total** | **{sum(s.ga for s in scores) / k:.3f}** "
        f"| **{sum(s.pa for s in scores) / k:.3f}** | {calls} | {templates} "
        f"| **{calls / templates:.2f}** | {statistics.fmean(baseline.values()):.3f} "
        f"| {max(s.p99_ms for s in scores):.2f} | {max(s.max_ms for s in scores):.2f} "
        f"| {max(s.cpu_p99_ms for s in scores):.2f} | {max(s.cpu_max_ms for s in scores):.2f} |"
    )
    return "\n".join(rows)


# -- leave-systems-out tuning ---------------------------------------------------------------

GRID: dict[str, tuple[Any, ...]] = {
    "sim_th": (0.3, 0.4, 0.5, 0.6),
    # Not 3: Drain's leaf would hold every cluster of a token count, and a line is
    # compared with each of them (cost growing with the clusters, not bounded per line).
    "depth": (4, 5, 6),
    "masks": ("general", "numbers"),
}


def grid() -> list[StoreConfig]:
    keys = list(GRID)
    return [
        replace(StoreConfig(), **dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(GRID[k] for k in keys))
    ]


def _rank(scores: Sequence[Score]) -> tuple[float, float, float]:
    """Average GA first, then PA, then fewer model calls."""
    return (
        round(statistics.fmean(s.ga for s in scores), 4),
        round(statistics.fmean(s.pa for s in scores), 4),
        -sum(s.calls for s in scores),
    )


def tune(systems: Sequence[System], model: Model, folds: int) -> str:
    """Scores of every grid point on every system, then the folds' choices."""
    points = grid()
    results = {(i, s.name): run_system(s, c, model) for i, c in enumerate(points) for s in systems}
    names = [s.name for s in systems]
    all_in = max(range(len(points)), key=lambda i: _rank([results[i, n] for n in names]))
    held_scores: list[Score] = []
    lines = ["| held out | chosen on the others | held-out GA | held-out PA "
             "| held-out calls / templates | same systems, all-in GA |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    size = -(-len(names) // folds)
    for f in range(folds):
        held = names[f * size : (f + 1) * size]
        train = [n for n in names if n not in held]
        best = max(range(len(points)), key=lambda i: _rank([results[i, n] for n in train]))
        got = [results[best, n] for n in held]
        held_scores += got
        lines.append(
            f"| {', '.join(held)} | {_describe(points[best])} "
            f"| {statistics.fmean(s.ga for s in got):.3f} "
            f"| {statistics.fmean(s.pa for s in got):.3f} "
            f"| {sum(s.calls for s in got) / sum(s.templates for s in got):.2f} "
            f"| {statistics.fmean(results[all_in, n].ga for n in held):.3f} |"
        )
    cv = statistics.fmean(s.ga for s in held_scores)
    full = statistics.fmean(results[all_in, n].ga for n in names)
    lines += ["", f"All-in choice: {_describe(points[all_in])}, average GA {full:.3f}; "
              f"leave-systems-out average GA {cv:.3f} (difference {full - cv:+.3f}); "
              f"held-out PA {statistics.fmean(s.pa for s in held_scores):.3f}."]  # fmt: skip
    return "\n".join(lines)


# -- adversarial lines -------------------------------------------------------------------


def _stress_cases() -> dict[str, list[str]]:
    """Lines made to be expensive: a leaf of thousands of clusters, very long lines."""
    rng = random.Random(1)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(6))

    return {
        "12,000 distinct lines of one shape (one Drain leaf)": [
            f"{i} " + " ".join(word() for _ in range(20)) for i in range(12_000)
        ],
        "200 lines of 100,000 characters (syslog header, then words and numbers)": [
            f"Dec 10 06:55:46 host app[{i}]: "
            + " ".join(f"{word()}={rng.randrange(10**6)}" for _ in range(7_000))[:100_000]
            for i in range(200)
        ],
        "2,000 lines of 2,000 slashes and digits (no blanks)": [
            "/".join(str(rng.randrange(10)) for _ in range(1_000)) for _ in range(2_000)
        ],
    }


def stress() -> str:
    """Per line CPU time of the store on adversarial lines (no model: Drain's template
    stands in), next to Drain3 alone with its defaults on the same lines."""
    from drain3 import TemplateMiner  # noqa: PLC0415
    from drain3.template_miner_config import (  # noqa: PLC0415
        TemplateMinerConfig,
    )

    rows = ["| case | lines | p50 ms | p99 ms | max ms | Drain3 defaults alone: p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, lines in _stress_cases().items():
        parser, store = HeaderParser(), TemplateStore()
        ours: list[float] = []
        for line in lines:
            started = time.thread_time()
            content = parser.parse(line).content
            found = store.lookup(content)
            if isinstance(found, Miss):
                store.learn(content, None, found.cluster)
            ours.append(time.thread_time() - started)
        miner = TemplateMiner(None, TemplateMinerConfig())
        theirs: list[float] = []
        for line in lines:
            started = time.thread_time()
            miner.add_log_message(line)
            theirs.append(time.thread_time() - started)
        ours.sort()
        theirs.sort()
        rows.append(
            f"| {name} | {len(lines)} | {_at(ours, 0.5):.2f} | {_at(ours, 0.99):.2f} "
            f"| {ours[-1] * 1000:.2f} | {_at(theirs, 0.99):.2f} | {theirs[-1] * 1000:.2f} |"
        )
    return "\n".join(rows)


def _at(sorted_times: Sequence[float], q: float) -> float:
    return sorted_times[int(q * (len(sorted_times) - 1))] * 1000


def _describe(config: StoreConfig) -> str:
    return ", ".join(f"{k}={getattr(config, k)}" for k in GRID)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--data", type=Path, default=DEFAULT_DATA)
    cli.add_argument("--model", choices=sorted(MODELS), default="teacher")
    cli.add_argument("--systems", nargs="*", default=list(SYSTEMS))
    cli.add_argument("--tune", action="store_true", help="leave-systems-out choice of settings")
    cli.add_argument("--folds", type=int, default=4)
    cli.add_argument("--stress", action="store_true", help="time adversarial lines")
    cli.add_argument("--sim-th", type=float, default=StoreConfig.sim_th)
    cli.add_argument("--depth", type=int, default=StoreConfig.depth)
    cli.add_argument("--masks", default=StoreConfig.masks)
    args = cli.parse_args()
    systems = [load(args.data, name) for name in args.systems]
    model = MODELS[args.model]
    if args.tune:
        print(tune(systems, model, args.folds))
        return
    if args.stress:
        print(stress())
        return
    config = replace(StoreConfig(), sim_th=args.sim_th, depth=args.depth, masks=args.masks)
    started = time.perf_counter()
    scores = [run_system(s, config, model) for s in systems]
    elapsed = time.perf_counter() - started
    baseline = {s.name: drain_defaults(s) for s in systems}
    print(f"model={args.model} {_describe(config)} ({elapsed:.1f} s for "
          f"{sum(s.lines for s in scores)} lines)")  # fmt: skip
    print(table(scores, baseline))


if __name__ == "__main__":
    main()
