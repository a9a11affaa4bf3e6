"""``sluicegate eval`` on the user's own files: CSV, TSV and JSONL for every handler,
columns and labels in any case, missing columns and bad rows named (file and line),
``--limit``, progress, the route's options from ``-c``, and what the model failed on."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from stream.cli import commands as cli
from stream.evaluation.handlers import Progress
from tests.simutil import sim_config

REVIEWS = [
    ("Wonderful, excellent, I love it, great value!", "POSITIVE"),
    ("Terrible. Broke in a day, awful, worst purchase, hate it.", "Negative"),
    ("It came in a box on Tuesday.", "positive"),
    ("Not what I expected, the colour is different.", "negative "),
]


@pytest.fixture(autouse=True)
def no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SLUICEGATE_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def write_delimited(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, items: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    return path


def eval_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["eval", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(out: str) -> int:
    """The row count in the first table's heading: ``### name: `file` (N rows, ...``."""
    heading = next(line for line in out.splitlines() if line.startswith("### "))
    return int(heading.split("(", 1)[1].split(" rows", 1)[0])


def cascade_cells(out: str) -> list[str]:
    row = next(line for line in out.splitlines() if line.startswith("| cascade"))
    return [c.strip() for c in row.strip("|").split("|")]


# -- formats and label case ---------------------------------------------------------------


def test_sentiment_tsv_with_odd_label_case_warns_of_unknown_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[list[object]] = [[i, t, lab] for i, (t, lab) in enumerate(REVIEWS * 2)]
    rows += [[90, "So so.", "meh"], [91, "Fine.", "meh"], [92, "Ok.", "mixed"]]
    data = write_delimited(tmp_path / "mine.tsv", ["ID", "Review", "Sentiment"], rows)
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == 0, err
    assert table_rows(out) == 8  # POSITIVE, Negative and "negative " count; meh/mixed do not
    assert "3 rows skipped" in err
    assert "'meh' (2), 'mixed' (1)" in err


def test_sentiment_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "mine.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS])
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == 0, err
    assert table_rows(out) == 4
    assert "warning" not in err


def test_moderation_csv_with_category_names_as_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_delimited(
        tmp_path / "posts.csv",
        ["Text", "Harassment", "violence", "source"],
        [["Have a lovely day, friends!", "0", "false", "web"],
         ["I will kill you, you worthless idiot.", "1", "yes", "app"],
         ["Our garden party was great fun.", "", "0", "web"]],
    )  # fmt: skip
    code, out, err = eval_cli(capsys, "moderation", "--data", str(data))
    assert code == 0, err
    assert table_rows(out) == 3
    assert "columns ignored (not a category of the taxonomy): source" in err
    assert "Per category F1" in out


def log_items() -> list[dict[str, object]]:
    kinds = [("Opened <*> port <*>", "Opened 10.0.0.{i} port 8{i}"),
             ("Closed session <*>", "Closed session {i}{i}7")]  # fmt: skip
    items: list[dict[str, object]] = []
    for i in range(12):
        template, text = kinds[i % 2]
        line = f"2026-11-24 10:00:{i:02d},000 INFO toy.Service: {text.format(i=i)}"
        items.append({"Line": line, "Template": template, "group": f"E{i % 2}"})
    return items


def test_logs_from_jsonl_and_csv_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "toy.jsonl", log_items())
    code, out, err = eval_cli(capsys, "logs", "--data", str(data))
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("| toy |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (cells[1], cells[2]) == ("12", "2")  # lines, true groups
    assert float(cells[4]) == 1.0  # grouping accuracy
    # Groups only (no templates): grouping is scored, parsing accuracy is not.
    grouped = [[i["Line"], i["group"]] for i in log_items()]
    data = write_delimited(tmp_path / "grouped.csv", ["message", "EventId"], grouped)
    code, out, err = eval_cli(capsys, "logs", "--data", str(data), "--limit", "6")
    assert code == 0, err
    cells = [c.strip() for c in next(
        line for line in out.splitlines() if line.startswith("| grouped |")
    ).strip("|").split("|")]  # fmt: skip
    assert cells[1] == "6"
    assert cells[5] == "-"


# -- missing columns and bad rows ---------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "header", "expected"),
    [
        ("sentiment", ["review", "stars"], "no label column; expected one of label_text, sen"),
        ("sentiment", ["title", "label"], "no text column; expected one of text, review"),
        ("moderation", ["prompt", "toxic"], "no category label column; expected any of S (sex"),
        ("logs", ["line", "level"], "no label column; expected a template column"),
    ],
)
def test_a_missing_column_names_the_columns_found_and_expected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, header: list[str],
    expected: str,
) -> None:  # fmt: skip
    data = write_delimited(tmp_path / "x.tsv", header, [["a", "b"]])
    code, _, err = eval_cli(capsys, target, "--data", str(data))
    assert code == cli.EXIT_CONFIG
    assert expected in err
    assert f"found {', '.join(header)}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.csv", 'text,label\n"fine",positive\n"too",many,fields\n', "a.csv line 3: 3 fields"),
        ("b.csv", 'text,label\n"open quote,positive\n', "b.csv line 2: not valid CSV"),
        ("c.jsonl", '{"text": "ok"}\n{"text": oops}\n', "c.jsonl line 2: not JSON"),
        ("d.jsonl", '{"text": "ok"}\n\n["a list"]\n', "d.jsonl line 3: a JSON object"),
        ("e.txt", "text,label\n", "cannot read .txt; give .csv, .tsv or .jsonl"),
        ("f.csv", "", "f.csv: the file is empty"),
    ],
)  # fmt: skip
def test_a_bad_row_is_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, expected: str
) -> None:
    data = tmp_path / name
    data.write_text(content)
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == cli.EXIT_CONFIG
    assert expected in err
    assert "Traceback" not in err


def test_a_bad_label_cell_is_named_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "m.csv"
    data.write_text('prompt,V\n"hello",0\n\n"hit him",maybe\n')
    code, _, err = eval_cli(capsys, "moderation", "--data", str(data))
    assert code == cli.EXIT_CONFIG
    assert "m.csv line 4: V = 'maybe'; expected 0 or 1" in err


def test_not_utf8_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "latin.csv"
    data.write_bytes("text,label\ncaf\xe9 ok,positive\n".encode("latin-1"))
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == cli.EXIT_CONFIG
    assert "latin.csv: not UTF-8 text" in err


# -- --limit and progress -----------------------------------------------------------------


def test_limit_takes_the_first_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS * 5])
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data), "--limit", "3")
    assert code == 0, err
    assert table_rows(out) == 3
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data), "--limit", "0")
    assert code == cli.EXIT_CONFIG
    assert "--limit 0" in err


def test_progress_is_throttled(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    progress = Progress("cascade", 1000, every=10.0, clock=lambda: now[0])
    for _ in range(1000):
        now[0] += 0.125  # 125 s in all
        progress.step()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 12  # one line per 10 s, not one per row
    assert lines[0] == "sluicegate eval: cascade: 80/1000 rows (8.0/s)"


def test_progress_shows_on_stderr_of_a_long_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stream.evaluation.handlers.PROGRESS_EVERY_S", 0.0)
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS])
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == 0, err
    assert "sluicegate eval: model only: 1/4 rows" in err
    assert "rows (" not in out


def test_a_short_pass_prints_no_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS])
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == 0, err
    assert "rows (" not in err


# -- the route's options from -c ----------------------------------------------------------

ROUTE = """
[[routes]]
name = "{name}"
input_topics = ["in.{name}"]
output_topic = "out.{name}"
handler = "{handler}"
"""


def config(tmp_path: Path, *routes: str) -> Path:
    path = tmp_path / "sluicegate.toml"
    path.write_text("\n".join(routes))
    return path


def test_the_routes_options_come_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS])
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == 0, err
    # A few rows: the learned tier is still cold and leaves every one to the model.
    assert cascade_cells(out)[3] == "0.0%"
    cfg = config(tmp_path, ROUTE.format(name="reviews", handler="sentiment")
                 + "[routes.options]\nstatic_tier = true\n")  # fmt: skip
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data), "-c", str(cfg))
    assert code == 0, err
    assert cascade_cells(out)[3] != "0.0%"  # the route's static_tier = true answers some


def test_a_bad_option_or_ambiguous_route_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": t, "label": lab} for t, lab in REVIEWS])
    two = config(tmp_path, ROUTE.format(name="a", handler="sentiment"),
                 ROUTE.format(name="b", handler="sentiment"))  # fmt: skip
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data), "-c", str(two))
    assert code == cli.EXIT_CONFIG
    assert "routes a, b" in err
    assert "--route NAME" in err
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data), "-c", str(two),
                            "--route", "c")  # fmt: skip
    assert code == cli.EXIT_CONFIG
    assert "--route c: no such route" in err
    code, _, err = eval_cli(capsys, "sentiment", "--data", str(data), "-c", str(two),
                            "--route", "b")  # fmt: skip
    assert code == 0, err


TASK = """
[routes.options]
name = "tickets"
instruction = "Route each ticket to its team."
text_field = "body"

[routes.options.schema]
type = "object"
required = ["category", "urgent"]

[routes.options.schema.properties.category]
enum = ["billing", "technical_support", "general_inquiry"]

[routes.options.schema.properties.urgent]
type = "boolean"
"""


def test_task_is_scored_on_the_fields_of_its_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, ROUTE.format(name="tickets", handler="task") + TASK)
    data = write_delimited(
        tmp_path / "tickets.csv",
        ["body", "Category", "expected_urgent"],
        [["I was charged twice for my order.", "Billing", "yes"],
         ["The app crashes when I log in.", "TECHNICAL_SUPPORT", "true"],
         ["What are your opening hours?", "general_inquiry", "no"],
         ["Where is my parcel?", "shipping", ""]],
    )  # fmt: skip
    code, out, err = eval_cli(capsys, "task", "--data", str(data), "-c", str(cfg))
    assert code == 0, err
    assert table_rows(out) == 4
    assert "accuracy_category" in out
    assert "accuracy_urgent" in out
    assert "1 category label cell skipped" in err
    assert "'shipping' (1)" in err
    # Without the task's route there is nothing to evaluate.
    code, _, err = eval_cli(capsys, "task", "--data", str(data))
    assert code == cli.EXIT_CONFIG
    assert 'no route with handler = "task"' in err
    bad = write_delimited(tmp_path / "nolabel.csv", ["body", "team"], [["hi", "billing"]])
    code, _, err = eval_cli(capsys, "task", "--data", str(bad), "-c", str(cfg))
    assert code == cli.EXIT_CONFIG
    assert "category, urgent" in err
    assert "found body, team" in err


# -- what the model failed on -------------------------------------------------------------


@pytest.mark.asyncio
async def test_eval_says_timeouts_opened_the_breaker(
    tmp_path: Path, simulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every request hangs: the message says they timed out and that the breaker opened
    after them, not only "circuit open"."""
    await sim_config(simulator, hang=1.0, hang_s=2.0)
    cfg = tmp_path / "sluicegate.toml"
    cfg.write_text(
        f'[model]\nbase_url = "{simulator}"\napi_key = "sim"\ntimeout_s = 0.2\n'
        "max_attempts = 4\nbreaker_threshold = 2\nbreaker_cooldown_s = 30\n"
    )
    # Texts the local tier cannot answer, so the cascade asks the model.
    data = write_jsonl(tmp_path / "r.jsonl", [{"text": f"It came in a box, {i}.",
                                               "label": "positive"} for i in range(4)])  # fmt: skip
    code = await asyncio.to_thread(cli.main, ["eval", "sentiment", "--data", str(data),
                                              "-c", str(cfg)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE
    assert "the model failed on 4 of 4 rows (cascade" in err
    assert "circuit breaker was open" in err
    assert "requests sent: 2 timeout" in err
    assert "the breaker opened after failed requests: 2 timed out (model.timeout_s)" in err


def test_rows_without_text_or_label_are_skipped_with_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items: list[dict[str, object]] = [{"text": t, "label": lab} for t, lab in REVIEWS]
    items += [{"label": "positive"}, {"text": "  ", "label": "negative"}, {"text": "No label."}]
    data = write_jsonl(tmp_path / "holes.jsonl", items)
    code, out, err = eval_cli(capsys, "sentiment", "--data", str(data))
    assert code == 0, err
    assert table_rows(out) == 4
    assert "2 rows skipped, no text in text (line 5, 6)" in err
    assert "1 row skipped, their label is not one of" in err
    assert "empty (1)" in err


def write_as(path: Path, items: list[dict[str, object]]) -> Path:
    """``items`` as a .jsonl file, or as a .csv/.tsv with their keys as the header."""
    if path.suffix == ".jsonl":
        return write_jsonl(path, items)
    header = list(items[0])
    return write_delimited(path, header, [[i.get(k, "") for k in header] for i in items])


FORMAT_CASES: dict[str, tuple[list[dict[str, object]], str]] = {
    "sentiment": ([{"TEXT": t, "Label": lab} for t, lab in REVIEWS], ""),
    "moderation": (
        [
            {"Prompt": "Have a lovely day!", "hr": 0, "V": 0},
            {"Prompt": "I will kill you, idiot.", "hr": 1, "V": 1},
        ],
        "",
    ),
    "logs": ([{k: v for k, v in i.items() if k != "group"} for i in log_items()], ""),
    "task": (
        [
            {"body": "I was charged twice.", "category": "billing", "urgent": "no"},
            {"body": "It crashes.", "category": "Technical_Support", "urgent": "yes"},
        ],
        ROUTE.format(name="tickets", handler="task") + TASK,
    ),
}


@pytest.mark.parametrize("target", sorted(FORMAT_CASES))
def test_every_handler_reads_csv_tsv_and_jsonl_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    items, route = FORMAT_CASES[target]
    extra = ["-c", str(config(tmp_path, route))] if route else []
    tables = []
    for suffix in (".csv", ".tsv", ".jsonl"):
        data = write_as(tmp_path / f"data{suffix}", items)
        code, out, err = eval_cli(capsys, target, "--data", str(data), *extra)
        assert code == 0, err
        # The first table row without the model's figures (its timing may batch apart).
        first = next(
            line
            for line in out.splitlines()
            if line.startswith("| ")
            and "---" not in line
            and not line.startswith("| run")
            and not line.startswith("| system")
        )
        tables.append(first.split("|")[:4] if target != "task" else first.split("|")[:3])
    assert tables[0] == tables[1] == tables[2]
    assert "warning" not in capsys.readouterr().err
