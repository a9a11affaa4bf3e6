"""Log template grouping on Loghub-2k (corrected): accuracy and model calls per system.

Each system's 2,000 lines are streamed once, in file order, through ``HeaderParser`` and
``TemplateMiner``; a miss is one model call, answered by the simulator's templater (called
directly). Reported per system:

- GA: share of lines whose predicted group (lines with the same template id) equals their
  true group (lines with the same EventId). ``GA`` uses the id a line got when it was
  processed; ``GA final`` groups by the template each id holds at the end (what a user
  browsing templates sees).
- PA: share of lines whose template equals the true one, as emitted and at the end.
- calls: model calls, against the number of true templates.

Usage: ``python -m tests.bench.log_grouping [--data ../shared/datasets/logs]``.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from handlers.logtemplates import (
    HeaderParser,
    Match,
    MinerConfig,
    Miss,
    TemplateMiner,
    normalize_template,
)
from stream.simulator import oracle

SYSTEMS = ("HDFS", "Apache", "OpenSSH", "Zookeeper", "Spark", "Linux", "Proxifier", "HealthApp")
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "logs"
Model = Callable[[str], str]


@dataclass(frozen=True)
class Score:
    system: str
    lines: int
    templates: int
    calls: int
    ga: float
    ga_final: float
    pa: float
    pa_final: float
    learned: int


def grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of lines whose predicted group is exactly their true group."""
    pred_groups: dict[Hashable, set[int]] = defaultdict(set)
    true_groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    right = sum(
        1
        for i, (p, t) in enumerate(zip(predicted, truth, strict=True))
        if pred_groups[p] == true_groups[t]
    )
    return right / len(truth) if truth else 0.0


def simulator_model(content: str) -> str:
    """The simulator's templater: what the simulated model answers for a ``template``."""
    return oracle.log_line(content).template


def digits_model(content: str) -> str:
    """A weak model: only tokens with digits become ``<*>``."""
    return " ".join("<*>" if any(c.isdigit() for c in t) else t for t in content.split())


def no_model(content: str) -> str:
    """No usable answer: the miner falls back to its own masked template."""
    return ""


MODELS: dict[str, Model] = {"simulator": simulator_model, "digits": digits_model, "none": no_model}


def run_system(
    folder: Path, system: str, config: MinerConfig, model: Model = simulator_model
) -> Score:
    raw = (folder / system / f"{system}_2k.log").read_text().splitlines()
    with (folder / system / f"{system}_2k.log_structured_corrected.csv").open() as f:
        rows = list(csv.DictReader(f))
    parser = HeaderParser(year=2005)
    miner = TemplateMiner(config)
    ids: list[str] = []
    emitted: list[str] = []
    calls = 0
    for line in raw:
        content = parser.parse(line).content
        found: Match | Miss = miner.lookup(content)
        if isinstance(found, Miss):
            calls += 1
            found = miner.learn(content, model(content), found.cluster)
        ids.append(found.template_id)
        emitted.append(found.template)
    truth_ids = [r["EventId"] for r in rows]
    truth = [normalize_template(r["EventTemplate"]) for r in rows]
    final = [miner.template(i) or e for i, e in zip(ids, emitted, strict=True)]
    n = len(rows)
    return Score(
        system=system,
        lines=n,
        templates=len(set(truth_ids)),
        calls=calls,
        ga=grouping_accuracy(ids, truth_ids),
        ga_final=grouping_accuracy(final, truth_ids),
        pa=sum(e == t for e, t in zip(emitted, truth, strict=True)) / n,
        pa_final=sum(e == t for e, t in zip(final, truth, strict=True)) / n,
        learned=len(miner),
    )


def table(scores: Sequence[Score]) -> str:
    head = "| system | GA | GA final | PA | PA final | calls | templates | calls/templates |"
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows.extend(
        f"| {s.system} | {s.ga:.3f} | {s.ga_final:.3f} | {s.pa:.3f} | {s.pa_final:.3f} "
        f"| {s.calls} | {s.templates} | {s.calls / s.templates:.2f} |"
        for s in scores
    )
    k = len(scores)
    calls = sum(s.calls for s in scores)
    templates = sum(s.templates for s in scores)
    rows.append(
        f"| **average / total** | {sum(s.ga for s in scores) / k:.3f} "
        f"| {sum(s.ga_final for s in scores) / k:.3f} | {sum(s.pa for s in scores) / k:.3f} "
        f"| {sum(s.pa_final for s in scores) / k:.3f} | {calls} | {templates} "
        f"| {calls / templates:.2f} |"
    )
    return "\n".join(rows)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--data", type=Path, default=DEFAULT_DATA)
    cli.add_argument("--sim-th", type=float, default=MinerConfig.sim_th)
    cli.add_argument("--depth", type=int, default=MinerConfig.depth)
    cli.add_argument("--max-doubts", type=int, default=MinerConfig.max_doubts)
    cli.add_argument("--model", choices=sorted(MODELS), default="simulator")
    cli.add_argument("--systems", nargs="*", default=list(SYSTEMS))
    args = cli.parse_args()
    config = replace(
        MinerConfig(), sim_th=args.sim_th, depth=args.depth, max_doubts=args.max_doubts
    )
    started = time.perf_counter()
    scores = [run_system(args.data, system, config, MODELS[args.model]) for system in args.systems]
    elapsed = time.perf_counter() - started
    print(
        f"model={args.model} sim_th={config.sim_th} depth={config.depth} "
        f"max_doubts={config.max_doubts} ({elapsed:.1f} s, {16000 / elapsed:.0f} lines/s)"
    )
    print(table(scores))


if __name__ == "__main__":
    main()
