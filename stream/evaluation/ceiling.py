"""How much any deferral policy could answer with the learned tier's student.

    python -m stream.evaluation.ceiling HANDLER FILE [--target 0.95] [--window 500]

The file's labels stream in order through the student alone (``stream.learn.student``,
the features and model the tier uses), ``chunk`` events at a time: each event is guessed
by the student as it was before learning it (prequential), then learned. Per window:
the student's accuracy against the labels, and the *ceiling*: the largest share of the
window whose most confident guesses are right at least ``target`` of the time, the
threshold chosen with hindsight on the window itself. No policy that must choose its
threshold beforehand, from audited events, can answer more at that precision; when the
ceiling is low the student, not the policy, is what limits the local share.

Sentiment files: the label field (``sentiment``); moderation: the verdict (flagged or
not) alone, an upper bound for the tier, which must also get every category right.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from stream.evaluation.handlers import READERS, Row


@dataclass(frozen=True)
class Ceiling:
    start: int
    events: int
    accuracy: float
    share: float  # largest share of the window answerable at >= target, with hindsight


def _label(name: str, row: Row) -> str:
    if name == "sentiment":
        return str(row.labels["label"])
    return "violates" if any(v == 1 for v in row.labels.values()) else "safe"


def ceilings(
    name: str, rows: Sequence[Row], *, target: float = 0.95, window: int = 500, chunk: int = 50
) -> list[Ceiling]:
    from stream.learn.student import Student, features  # noqa: PLC0415 - scikit-learn

    labels = [_label(name, r) for r in rows]
    values = tuple(sorted(set(labels)))
    student = Student({"label": values})
    confidence = np.zeros(len(rows))
    right = np.zeros(len(rows), dtype=bool)
    for begin in range(0, len(rows), chunk):
        part = rows[begin : begin + chunk]
        x = features([str(orjson.loads(r.value)["text"]) for r in part])
        for i, guess in enumerate(student.guess(x)):
            confidence[begin + i] = guess.confidence or 0.0
            right[begin + i] = guess.fields.get("label") == labels[begin + i]
        student.learn(x, [{"label": label} for label in labels[begin : begin + chunk]])
    out = []
    for start in range(0, len(rows), window):
        c, ok = confidence[start : start + window], right[start : start + window]
        order = np.argsort(-c, kind="stable")
        precision = np.cumsum(ok[order]) / np.arange(1, len(order) + 1)
        good = np.flatnonzero(precision >= target)
        share = (good.max() + 1) / len(c) if len(good) else 0.0
        out.append(Ceiling(start, len(c), float(ok.mean()), float(share)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.evaluation.ceiling")
    parser.add_argument("handler", choices=["sentiment", "moderation"])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    for path in args.data:
        rows = READERS[args.handler](path, args.limit)
        found = ceilings(args.handler, rows, target=args.target, window=args.window)
        print(f"\n{path.name} ({len(rows)} rows in file order), target {args.target:g}\n")
        print("| events | student accuracy (prequential) | ceiling: share at >= target |")
        print("|---|---:|---:|")
        for c in found:
            print(f"| {c.start + 1}-{c.start + c.events} | {c.accuracy:.3f} | {c.share:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
