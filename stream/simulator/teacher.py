"""The simulator as a model of known quality: answers from a labelled file, with noise.

``simulate-nano --teacher FILE [--teacher-noise 0.1]``: for an event whose text is in
the file, the labelled field of the answer is the file's label, flipped to another label
with probability ``teacher_noise``; every other field is answered as without a teacher.
The flip is drawn once per text (seeded), so the simulated model is wrong on the same
texts every time it is asked, as a real model would be. This is how the learned local
tier's cost and accuracy are measured honestly (EVAL.md): agreement with the teacher and
accuracy against the file's labels are different figures, and a student that agrees with
a teacher of noise 0.1 more than about 90% of the time is impossible on new texts.

Files read (the formats ``sluicegate eval`` reads, see ../shared/datasets/README.md):

- CSV with a ``text`` column and ``label_text`` (or ``label``): a sentiment-like label,
  given to the enum field whose values include it;
- JSONL with ``prompt`` (or ``text``) and 0/1 flags under category codes (``S``, ``H``,
  ``V``, ``HR``, ``SH``, ``S3``, ``H2``, ``V2``): flagged is any flag set; the answer's
  ``safe``/``violates`` verdict and its harm-category scores follow it;
- JSONL with ``text`` and ``label``: like the CSV.

Texts are matched after whitespace is collapsed and case folded, both as written and as
the handlers redact them (PII replaced before the model sees it).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

from handlers.redact import Redactor
from schemas.outputs import MODERATION_CATEGORIES, field_name
from stream.errors import ConfigError
from stream.simulator import labels, oracle

# The moderation set's category codes and the taxonomy category each one stands for.
MODERATION_CODES = {
    "S": "sexual",
    "H": "hate",
    "V": "violence",
    "HR": "harassment",
    "SH": "self-harm",
    "S3": "sexual/minors",
    "H2": "hate/threatening",
    "V2": "violence/graphic",
}
FLAGGED_SCORE = 0.9  # a flagged category's score; others get CLEAN_SCORE
CLEAN_SCORE = 0.02
_SPACE = re.compile(r"\s+")
_ZWSP = "\u200b"  # the prompt's escape of event tags (stream.model.prompt)
_CATEGORY_FIELDS = {labels.norm(field_name(c)): c for c in MODERATION_CATEGORIES}


def normalize(text: str) -> str:
    """The key a text is found by: whitespace collapsed, case folded, escapes removed."""
    return _SPACE.sub(" ", text.replace(_ZWSP, "")).strip().casefold()


@dataclass(frozen=True)
class Label:
    """The teacher's (noisy) answer for one text: a class label, or for moderation
    whether it is flagged and which taxonomy categories are."""

    value: str | None = None
    flagged: bool | None = None
    categories: frozenset[str] = frozenset()


class Teacher:
    """Labels by text, with each text's noise drawn once."""

    def __init__(self, rows: list[tuple[str, Label]], noise: float, seed: int | None) -> None:
        self.noise = noise
        self.seed = seed
        self.classes = sorted({label.value for _, label in rows if label.value is not None})
        self._by_text: dict[str, Label] = {}
        self.flipped = 0
        redactor = Redactor()
        for text, label in rows:
            noisy = self._noisy(text, label)
            self.flipped += noisy != label
            self._by_text.setdefault(normalize(text), noisy)
            self._by_text.setdefault(normalize(redactor.redact(text).text), noisy)

    def __len__(self) -> int:
        return len(self._by_text)

    def _noisy(self, text: str, label: Label) -> Label:
        if oracle.stable_fraction("teacher-noise", self.seed, text) >= self.noise:
            return label
        if label.flagged is not None:
            if label.flagged:
                return Label(flagged=False)
            scores = oracle.category_scores(text)
            return Label(flagged=True, categories=frozenset({max(scores, key=scores.__getitem__)}))
        others = [c for c in self.classes if c != label.value]
        if not others:
            return label
        return Label(value=oracle.stable_pick(others, "teacher-flip", self.seed, text))

    def label(self, text: str) -> Label | None:
        return self._by_text.get(normalize(text))

    def enum(self, values: list[object], text: str) -> object | None:
        """The teacher's choice among an enum's ``values`` for ``text``, if it has one."""
        label = self.label(text)
        if label is None:
            return None
        by_norm = {labels.norm(v): v for v in values if isinstance(v, str)}
        if label.value is not None:
            return by_norm.get(labels.norm(label.value))
        if label.flagged is not None and {"safe", "violates"} <= by_norm.keys():
            return by_norm["violates" if label.flagged else "safe"]
        return None

    def score(self, path: str, text: str) -> float | None:
        """A harm category's score for ``text`` when ``path`` is a taxonomy category
        field of the answer (``$.categories.hate``) and the teacher knows the text."""
        parts = path.split(".")
        if len(parts) < 2 or labels.norm(parts[-2].split("[")[0]) != "categories":
            return None
        category = _CATEGORY_FIELDS.get(labels.norm(parts[-1]))
        label = self.label(text)
        if category is None or label is None or label.flagged is None:
            return None
        return FLAGGED_SCORE if label.flagged and category in label.categories else CLEAN_SCORE


def load(path: str | Path, noise: float, seed: int | None) -> Teacher:
    """Read a labelled file; ``ConfigError`` says what is wrong and where."""
    file = Path(path)
    try:
        rows = _read_csv(file) if file.suffix.lower() == ".csv" else _read_jsonl(file)
    except OSError as exc:
        raise ConfigError(f"--teacher {file}: cannot read it: {exc}") from None
    if not rows:
        raise ConfigError(f"--teacher {file}: no labelled rows")
    return Teacher(rows, noise, seed)


def _read_csv(file: Path) -> list[tuple[str, Label]]:
    with file.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        column = "label_text" if "label_text" in fields else "label"
        if "text" not in fields or column not in fields:
            raise ConfigError(
                f"--teacher {file}: a CSV needs a 'text' column and 'label_text' or 'label'; "
                f"it has {', '.join(fields) or 'no header'}"
            )
        return [(r["text"], Label(value=r[column])) for r in reader if r["text"]]


def _read_jsonl(file: Path) -> list[tuple[str, Label]]:
    rows = []
    with file.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"--teacher {file}:{number}: not JSON: {exc}") from None
            text = item.get("prompt", item.get("text")) if isinstance(item, dict) else None
            if not isinstance(text, str):
                raise ConfigError(
                    f"--teacher {file}:{number}: a row needs 'prompt' or 'text' (a string), "
                    "and 'label' or category flags (S, H, V, HR, SH, S3, H2, V2)"
                )
            codes = {c: item[c] for c in MODERATION_CODES if c in item}
            if codes:
                flagged = frozenset(MODERATION_CODES[c] for c, v in codes.items() if v == 1)
                rows.append((text, Label(flagged=bool(flagged), categories=flagged)))
            elif isinstance(item.get("label"), str | int | bool):
                rows.append((text, Label(value=str(item["label"]))))
            else:
                raise ConfigError(f"--teacher {file}:{number}: no 'label' and no category flags")
    return rows
