"""The user's own labelled files for ``sluicegate eval``: CSV, TSV or JSONL for every
handler, columns and label names found case-insensitively.

A file that lacks a needed column is refused with the columns it has and the ones
accepted; labels the handler does not know are skipped with a warning that lists them,
so a typo in one label cannot silently count as a wrong answer.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = {".jsonl", ".ndjson"}
ACCEPTED = ".csv, .tsv or .jsonl"


class DataError(ValueError):
    """A labelled file cannot be read as the handler needs; the message says why."""


def warn(message: str) -> None:
    print(f"sluicegate eval: warning: {message}", file=sys.stderr)


@dataclass
class Table:
    """A labelled file's columns (in order of appearance), rows, and each row's line."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def where(self, index: int) -> str:
        return f"{self.path.name} line {self.lines[index]}"


def read_table(path: Path, limit: int | None = None) -> Table:
    """The first ``limit`` rows of a CSV, TSV or JSONL file. A malformed row stops the
    read with the file and line it is on."""
    suffix = path.suffix.lower()
    if suffix not in DELIMITERS and suffix not in JSON_LINES:
        raise DataError(f"{path.name}: cannot read {suffix or 'a file without a suffix'}; "
                        f"give {ACCEPTED}")  # fmt: skip
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if suffix in DELIMITERS:
                return _read_delimited(path, f, DELIMITERS[suffix], limit)
            return _read_json_lines(path, f, limit)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def _read_delimited(path: Path, f: TextIO, delimiter: str, limit: int | None) -> Table:
    reader = csv.reader(f, delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path.name}: the file is empty; a header row is needed")
        columns = [c.strip() for c in header]
        table = Table(path, columns)
        for cells in reader:
            if limit is not None and len(table.rows) >= limit:
                break
            if not any(c.strip() for c in cells):
                continue  # a blank line
            if len(cells) != len(columns):
                raise DataError(
                    f"{path.name} line {reader.line_num}: {len(cells)} fields, the header "
                    f"has {len(columns)} ({', '.join(columns)}); a field holding the "
                    f"delimiter {delimiter!r} must be quoted"
                )
            table.rows.append(dict(zip(columns, cells, strict=True)))
            table.lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path.name} line {reader.line_num}: not valid CSV ({exc})") from None
    return table


def _read_json_lines(path: Path, f: TextIO, limit: int | None) -> Table:
    seen: dict[str, None] = {}
    table = Table(path, [])
    for number, line in enumerate(f, 1):
        if limit is not None and len(table.rows) >= limit:
            break
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict):
            raise DataError(f"{path.name} line {number}: a JSON object is needed, "
                            f"not {type(item).__name__}")  # fmt: skip
        seen.update(dict.fromkeys(item))
        table.rows.append(item)
        table.lines.append(number)
    table.columns = list(seen)
    return table


def find_column(table: Table, accepted: Sequence[str], what: str) -> str:
    """The first of ``accepted`` among the table's columns, whatever its case; a file
    without any is refused with the columns it has and the ones accepted."""
    found = find_optional(table, accepted)
    if found is None:
        raise DataError(f"{table.path.name}: no {what} column; expected one of "
                        f"{', '.join(accepted)} (any case); found "
                        f"{', '.join(table.columns) or 'no columns'}")  # fmt: skip
    return found


def find_optional(table: Table, accepted: Sequence[str]) -> str | None:
    by_lower = {c.lower(): c for c in reversed(table.columns)}
    return next((by_lower[n.lower()] for n in accepted if n.lower() in by_lower), None)


def skip_unknown(
    path: Path, labels: Counter[str], known: Sequence[str], *, what: str = "rows"
) -> None:
    """Warn about the labels that are not one of ``known`` (lower case; those rows or
    cells are skipped), most frequent first."""
    unknown = {label: n for label, n in labels.items() if label.strip().lower() not in known}
    if unknown:
        ranked = sorted(unknown.items(), key=lambda item: (-item[1], item[0]))
        listed = ", ".join(f"{label!r} ({n})" if label.strip() else f"empty ({n})"
                           for label, n in ranked[:UNKNOWN_SHOWN])  # fmt: skip
        more = f" and {len(ranked) - UNKNOWN_SHOWN} more" if len(ranked) > UNKNOWN_SHOWN else ""
        count = sum(unknown.values())
        what = what[:-1] if count == 1 and what.endswith("s") else what
        warn(f"{path.name}: {count} {what} skipped, their label is not one "
             f"of {', '.join(known)} (any case): {listed}{more}")  # fmt: skip


UNKNOWN_SHOWN = 10


def with_text(table: Table, column: str) -> list[int]:
    """The indexes of the rows whose ``column`` holds text; the others are skipped with
    a warning naming their lines (a JSONL row may lack the key, a CSV cell be empty)."""
    kept: list[int] = []
    empty: list[int] = []
    for i, row in enumerate(table.rows):
        value = row.get(column)
        (kept if isinstance(value, str) and value.strip() else empty).append(i)
    if empty:
        lines = ", ".join(str(table.lines[i]) for i in empty[:UNKNOWN_SHOWN])
        more = f" and {len(empty) - UNKNOWN_SHOWN} more" if len(empty) > UNKNOWN_SHOWN else ""
        warn(f"{table.path.name}: {len(empty)} row{'s' if len(empty) != 1 else ''} skipped, "
             f"no text in {column} (line {lines}{more})")  # fmt: skip
    return kept


def flag(value: Any, table: Table, column: str, index: int) -> int | None:
    """A 0/1 label cell (``1``, ``0``, ``true``, ``false``, ``yes``, ``no``); empty: none."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in {"1", "1.0", "true", "yes", "y"}:
        return 1
    if text in {"0", "0.0", "false", "no", "n"}:
        return 0
    raise DataError(f"{table.where(index)}: {column} = {value!r}; "
                    "expected 0 or 1 (true/false, yes/no)")  # fmt: skip
