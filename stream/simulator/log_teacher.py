"""A teacher for log templates: the simulator answers from Loghub's ground truth.

``simulate-nano --log-teacher PATH`` (a Loghub ``*_structured*.csv`` with ``Content`` and
``EventTemplate`` columns, or a folder holding such files) makes the simulator write, for
a log message it was given, the message's true template and its values, instead of its
heuristic guess. With it, ``sluicegate eval logs`` measures the store and its caching
(grouping, reuse of learned templates, calls per template), not the simulator's masks. A
message the files do not hold gets the heuristic answer, as before.

Messages are looked up as written (blanks collapsed); when the handler's header parser
kept a few more leading tokens than Loghub's (or fewer), the lookup also tries the
message without its first tokens, and the files' messages without theirs. A message in
which the handler redacted values (``[CARD]``, ``[EMAIL]``...) is matched with each
placeholder as a wildcard against the files' messages that start with its first token.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from handlers.logs.templates import Template, fitted, normalize_line, normalize_template
from handlers.redact import PLACEHOLDERS

_DROP = 3  # leading tokens a header split may disagree on
_PLACEHOLDERS = tuple(PLACEHOLDERS.values())


@dataclass(frozen=True)
class Taught:
    """The true template of a message and the values of its ``<*>`` slots."""

    template: str
    values: tuple[str, ...]


class LogTeacher:
    """Message -> true template, read from Loghub structured CSV files."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._exact: dict[str, str] = {}
        self._by_first: dict[str, list[str]] = {}
        shortened: dict[str, str | None] = {}
        for content, template in pairs:
            line = normalize_line(content)
            if line not in self._exact:
                self._exact[line] = normalize_template(template)
                self._by_first.setdefault(line.split(" ", 1)[0], []).append(line)
            tokens = line.split(" ")
            for drop in range(1, min(_DROP, len(tokens) - 1) + 1):
                key = " ".join(tokens[drop:])
                known = shortened.get(key, "")
                shortened[key] = template if known in ("", template) else None  # ambiguous
        self._shortened = {k: v for k, v in shortened.items() if v is not None}

    def __len__(self) -> int:
        return len(self._exact)

    @classmethod
    def load(cls, path: Path) -> LogTeacher:
        """Every ``*structured*.csv`` at ``path`` (a file or a folder, searched below it).
        ``ValueError`` says what is wrong with a file that is not one."""
        files = [path] if path.is_file() else sorted(path.rglob("*structured*.csv"))
        if not files:
            raise ValueError(f"log teacher: no *structured*.csv file at {path}")
        pairs: list[tuple[str, str]] = []
        for file in files:
            with file.open(newline="", encoding="utf-8", errors="replace") as f:
                reader = csv.DictReader(f)
                columns = set(reader.fieldnames or ())
                if not {"Content", "EventTemplate"} <= columns:
                    raise ValueError(
                        f"log teacher: {file} has columns {sorted(columns)}; a Loghub "
                        "structured CSV needs Content and EventTemplate"
                    )
                pairs.extend((row["Content"], row["EventTemplate"]) for row in reader)
        return cls(pairs)

    def template(self, message: str) -> str | None:
        """The true template of ``message``, or None if the files do not hold it."""
        line = normalize_line(message)
        found = self._exact.get(line)
        if found is not None:
            return found
        tokens = line.split(" ")
        for drop in range(1, min(_DROP, len(tokens) - 1) + 1):
            found = self._exact.get(" ".join(tokens[drop:]))
            if found is not None:
                return found
        shortened = self._shortened.get(line)
        if shortened is not None:
            return normalize_template(shortened)
        return self._redacted(line)

    def _redacted(self, line: str) -> str | None:
        """The template of a known message that ``line`` is, but for redacted values."""
        if not any(p in line for p in _PLACEHOLDERS):
            return None
        pattern = line
        for placeholder in _PLACEHOLDERS:
            pattern = pattern.replace(placeholder, "<*>")
        glob = Template.parse(pattern, wide=True)
        for known in self._by_first.get(line.split(" ", 1)[0], ()):
            if glob.match(known) is not None:
                return self._exact[known]
        return None

    def teach(self, message: str) -> Taught | None:
        """The true template and the values it replaced in ``message`` (a template that
        does not fit the message exactly still comes back, with no values)."""
        template = self.template(message)
        if template is None:
            return None
        fit = fitted(template, normalize_line(message))
        return Taught(template, fit[1] if fit is not None else ())


@lru_cache(maxsize=8)
def load_teacher(path: str) -> LogTeacher:
    """The teacher of a path, read once per process (a server, or tests sharing one)."""
    return LogTeacher.load(Path(path))
