"""Write every event and answer schema as JSON Schema into ``schemas/json/``.

Consumers of the output, alerts and dead-letter topics (and producers of the inputs)
read these files instead of this code. ``python -m schemas.export`` rewrites them;
``python -m schemas.export --check`` fails if a file is missing or stale, and a test
runs the same check, so the files cannot drift from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.dlq import DlqEnvelope
from schemas.enriched import Alert, EnrichedEvent, MergedEvent
from schemas.events import LogEvent, Post, Review
from schemas.outputs import LogAnswer, ModerationAnswer, SentimentAnswer

FOLDER = Path(__file__).parent / "json"
MODELS: dict[str, type[BaseModel]] = {
    "event.log": LogEvent,
    "event.review": Review,
    "event.post": Post,
    "answer.sentiment": SentimentAnswer,
    "answer.moderation": ModerationAnswer,
    "answer.log": LogAnswer,
    "enriched": EnrichedEvent,
    "merged": MergedEvent,
    "alert": Alert,
    "dlq": DlqEnvelope,
}


def rendered() -> dict[str, str]:
    """File name -> the JSON Schema text it must hold."""
    out = {}
    for name, model in MODELS.items():
        schema = model.model_json_schema(by_alias=True)
        schema["$id"] = f"{name}.schema.json"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def stale(folder: Path = FOLDER) -> list[str]:
    """Files that are missing, different or no longer made."""
    want = rendered()
    have = {p.name for p in folder.glob("*.schema.json")} if folder.exists() else set()
    wrong = [n for n, text in want.items() if not (folder / n).exists()
             or (folder / n).read_text() != text]  # fmt: skip
    return sorted(wrong + list(have - want.keys()))


def write(folder: Path = FOLDER) -> None:
    folder.mkdir(exist_ok=True)
    want = rendered()
    for old in folder.glob("*.schema.json"):
        if old.name not in want:
            old.unlink()
    for name, text in want.items():
        (folder / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            print(f"stale JSON schemas in {FOLDER}: {', '.join(bad)}; "
                  "run `python -m schemas.export`", file=sys.stderr)  # fmt: skip
            return 1
        print(f"{len(MODELS)} JSON schemas in {FOLDER} are current")
        return 0
    write()
    print(f"wrote {len(MODELS)} JSON schemas to {FOLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
