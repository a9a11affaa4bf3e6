"""The JSON Schema files in schemas/json/ match the models they are made from."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from schemas import export
from schemas.enriched import EnrichedEvent


def test_exported_files_are_current() -> None:
    assert export.stale() == [], "run `python -m schemas.export` and commit schemas/json"


def test_stale_files_are_found(tmp_path: Path) -> None:
    export.write(tmp_path)
    assert export.stale(tmp_path) == []
    (tmp_path / "enriched.schema.json").write_text("{}")
    (tmp_path / "gone.schema.json").write_text("{}")
    assert export.stale(tmp_path) == ["enriched.schema.json", "gone.schema.json"]


def test_an_enriched_event_validates_against_its_exported_schema() -> None:
    schema = json.loads((export.FOLDER / "enriched.schema.json").read_text())
    assert schema["required"] == ["event", "enrichment"]
    event = {"event": {"text": "hi"}, "enrichment": {
        "handler": "sentiment", "route": "reviews", "answer": {"sentiment": "positive"},
        "source": "local", "tier": "local", "latency_ms": 0.1}}  # fmt: skip
    parsed = EnrichedEvent.model_validate_json(orjson.dumps(event))
    assert set(parsed.enrichment.model_dump()) <= set(schema["$defs"]["Enrichment"]["properties"])
