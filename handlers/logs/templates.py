"""Templates (``<*>`` for each variable) and the linear-time test of a line against one.

A template is literal text with slots; matching it is glob matching, done by placing
each literal piece at its leftmost occurrence with ``str.find``. That is linear in the
line's length whatever the template, where a regex of ``(.*?)`` groups backtracks
(seconds per line on long lines with many slots). A *narrow* slot holds no blank (the
usual case: one token or part of one); a *wide* slot may span tokens ("5 ms", a quoted
sentence). Whitespace is compared as single spaces.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

WILDCARD = "<*>"
_SPELLINGS = re.compile(r"<\s*\*\s*>|\{\s*\*?\s*\}|<VAR>|<var>")
_RUNS = re.compile(r"(?:<\*>){2,}")


def normalize_template(template: str) -> str:
    """One space between tokens and ``<*>`` for the usual ways of writing a variable;
    adjacent slots (``<*><*>``) are one, as no line can tell them apart."""
    text = _RUNS.sub(WILDCARD, _SPELLINGS.sub(WILDCARD, template))
    return " ".join(text.split())


def normalize_line(text: str) -> str:
    """A line's text as templates are compared with it: blanks collapsed to one space."""
    return " ".join(text.split())


def stable_id(prefix: str, template: str) -> str:
    """A short id of a template (prefix + 8 hex), the same on every node and restart."""
    digest = hashlib.blake2b(normalize_template(template).encode(), digest_size=4).hexdigest()
    return f"{prefix}{digest}"


@lru_cache(maxsize=4096)
def error_signature(template: str) -> str:
    """The id alerts and dashboards group errors by (``E`` + 8 hex of the template)."""
    return stable_id("E", template)


@dataclass(frozen=True, slots=True)
class Template:
    """A normalized template split at its slots; ``weight`` (literal characters) orders
    templates from the most specific, so a general one never shadows a precise one."""

    text: str
    pieces: tuple[str, ...]  # literal text around the slots: one more than the slots
    wide: bool
    weight: int

    @classmethod
    def parse(cls, template: str, *, wide: bool = False) -> Template:
        text = normalize_template(template)
        pieces = tuple(text.split(WILDCARD))
        return cls(text, pieces, wide, len(text) - 3 * (len(pieces) - 1))

    @property
    def slots(self) -> int:
        return len(self.pieces) - 1

    def match(self, line: str) -> tuple[str, ...] | None:
        """The slot values if ``line`` (normalized) fits, else None. A slot may be empty
        (``uid= user=``, ``()``); a narrow slot holds no space."""
        pieces = self.pieces
        if len(pieces) == 1:
            return () if line == pieces[0] else None
        first, last = pieces[0], pieces[-1]
        if not line.startswith(first) or not line.endswith(last):
            return None
        end = len(line) - len(last)
        pos = len(first)
        values = []
        for piece in pieces[1:-1]:
            found = line.find(piece, pos, end)
            if found < 0:
                return None
            values.append(line[pos:found])
            pos = found + len(piece)
        if end < pos:
            return None
        values.append(line[pos:end])
        if not self.wide and any(" " in value for value in values):
            return None
        return tuple(values)


def fitted(template: str, line: str) -> tuple[Template, tuple[str, ...]] | None:
    """``template`` read narrow if that fits ``line``, else wide; None if neither does."""
    narrow = Template.parse(template)
    values = narrow.match(line)
    if values is not None:
        return narrow, values
    wide = Template.parse(template, wide=True)
    values = wide.match(line)
    return None if values is None else (wide, values)


_SLOT = re.compile(r"(?:([A-Za-z_][\w.-]*)\s*[=:]\s*|([A-Za-z][\w-]*)\W{0,2}\s+)?<\*>")


@lru_cache(maxsize=4096)
def slot_names(template: str) -> tuple[str, ...]:
    """A name per ``<*>``: the key of ``key=<*>``, else the word before it, else ``p<n>``."""
    names = []
    for n, found in enumerate(_SLOT.finditer(template), 1):
        word = found.group(1) or found.group(2)
        names.append(word.lower().replace("-", "_").replace(".", "_") if word else f"p{n}")
    return tuple(names)
