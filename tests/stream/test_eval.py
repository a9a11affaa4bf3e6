"""``sluicegate eval`` on small labelled files made here, with the in-process simulator:
the tables come out, EVAL.md sections are replaced in place, and bad input is named."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stream.cli import commands as cli


@pytest.fixture(autouse=True)
def no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


def sentiment_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    rows = [("Wonderful, excellent, I love it, great value!", "positive"),
            ("Terrible. Broke in a day, awful, worst purchase, hate it.", "negative"),
            ("It came in a box on Tuesday.", "positive"),
            ("Not what I expected, the colour is different.", "negative")] * 3  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["original_index", "text", "label", "label_text"])
        for i, (text, label) in enumerate(rows):
            writer.writerow([i, text, int(label == "positive"), label])
    return path


def loghub_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "logs" / "Toy"
    folder.mkdir(parents=True)
    kinds = [("E1", "Opened <*> port <*>", "Opened 10.0.0.{i} port 8{i}"),
             ("E2", "Closed session <*>", "Closed session {i}{i}7"),
             ("E3", "Cache flushed", "Cache flushed")]  # fmt: skip
    lines, rows = [], []
    for i in range(30):
        event, template, text = kinds[i % 3]
        content = text.format(i=i)
        lines.append(f"2026-11-24 10:00:{i:02d},000 INFO toy.Service: {content}")
        rows.append(
            {"LineId": i + 1, "Content": content, "EventId": event, "EventTemplate": template}
        )
    (folder / "Toy_2k.log").write_text("\n".join(lines) + "\n")
    with (folder / "Toy_2k.log_structured_corrected.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["LineId", "Content", "EventId", "EventTemplate"])
        writer.writeheader()
        writer.writerows(rows)
    return folder.parent


def test_eval_writes_tables_into_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "EVAL.md"
    data = sentiment_file(tmp_path)
    assert cli.main(["eval", "sentiment", "--data", str(data), "--write", str(report)]) == 0
    out = capsys.readouterr().out
    assert "local tier alone" in out
    assert "cascade (local tier, then the model)" in out
    text = report.read_text()
    assert "not a real model's quality" in text  # the simulator caveat
    assert text.count("<!-- eval:sentiment:start -->") == 1
    # A second run replaces its section instead of appending one.
    assert cli.main(["eval", "sentiment", "--data", str(data), "--write", str(report)]) == 0
    assert report.read_text().count("<!-- eval:sentiment:start -->") == 1


def test_eval_moderation_scores_each_labelled_category(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mod.jsonl"
    items = [{"prompt": "Have a lovely day, friends!", "S": 0, "H": 0, "V": 0},
             {"prompt": "I will kill you, you worthless idiot.", "HR": 1, "V": 1},
             {"prompt": "Our garden party was great fun.", "S": 0}] * 2  # fmt: skip
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    assert cli.main(["eval", "moderation", "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Per category F1" in out
    assert "harassment" in out


def test_eval_logs_groups_templates_with_few_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the simulator's heuristics and with its teacher: exact groups, one call per
    template; the teacher's templates are the true ones."""
    assert cli.main(["eval", "logs", "--data", str(loghub_folder(tmp_path))]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| Toy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    lines, templates, ga = int(cells[1]), int(cells[2]), float(cells[4])
    taught_ga, taught_pa, taught_calls = float(cells[7]), float(cells[8]), int(cells[9])
    assert (lines, templates) == (30, 3)
    assert ga == 1.0
    assert (taught_ga, taught_pa) == (1.0, 1.0)
    assert taught_calls <= 1.2 * templates
    assert 0 <= float(cells[3]) <= 1  # Drain3 with its defaults, the baseline


def test_eval_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["eval", "sentiment", "--data", str(tmp_path / "nope.csv")])
    assert code == cli.EXIT_CONFIG
    assert "nope.csv does not exist" in capsys.readouterr().err
