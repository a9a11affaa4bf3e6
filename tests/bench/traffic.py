"""Events for the load benchmarks: product reviews and log lines, generated from the
project's own samples (``stream/samples``) so that no data outside the repository is
needed, or read from a file of reviews given with ``--data``.

The reviews are sentences of every sentiment and intent put together at random, each
with its own details (days, order numbers, amounts), so that almost every text is new to
the response cache, as in a real stream; a small share repeats a shipped sample word for
word, as real streams repeat themselves. The log lines are the shipped samples with
fresh values for their variables (ids, durations, ports), so that they keep falling
into the same templates.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import orjson

_OPENERS = (
    "Bought this {days} days ago.",
    "Ordered it for my {person} last week.",
    "Second one I've owned.",
    "Got it on sale for ${price}.",
    "Had it for {days} days now.",
    "",
)
_POSITIVE = (
    "Works perfectly and the battery easily lasts {days} days.",
    "Really happy with it, setup took {minutes} minutes.",
    "Great value, the build quality is excellent.",
    "Love the screen, colours are gorgeous.",
    "Arrived a day early and everything was in the box.",
)
_NEGATIVE = (
    "Stopped working after {days} days.",
    "The charger died on day {days}, poor quality.",
    "Terrible sound, it crackles at any volume.",
    "Arrived with a cracked case and a missing cable.",
    "Disappointing, it is much slower than advertised.",
)
_NEUTRAL = (
    "It does the job, nothing special.",
    "Packaging was plain, the manual is short.",
    "About what you would expect for ${price}.",
    "Colour is a bit darker than the photos.",
)
_FRUSTRATED = (
    "Third time I'm writing to support about order {order} and NOBODY answers.",
    "Still waiting for the replacement after {days} days, this is ridiculous.",
    "The app logged me out again, I have reinstalled it {times} times already!!",
)
_INTENT = (
    "I want a refund, how do I send it back?",
    "Is this better than the X{model}? Thinking of buying a second one.",
    "Compared to the cheaper model it is only slightly faster.",
    "How do I fix the pairing error, the manual doesn't say.",
    "Will order again when it is back in stock.",
    "",
    "",
)
_MOODS = ((_POSITIVE, 5), (_NEGATIVE, 1), (_NEUTRAL, 3), (_FRUSTRATED, 1))
_PERSONS = ("son", "daughter", "partner", "office", "mother")
REPEAT_SHARE = 0.05  # events that repeat a shipped sample review word for word


def _sample_lines(name: str) -> list[str]:
    text = resources.files("stream.samples").joinpath(name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _json(line: str) -> dict[str, object] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        days=rng.randint(2, 60),
        minutes=rng.randint(2, 45),
        price=rng.randint(9, 400),
        order=f"o-{rng.randint(10_000, 99_999)}",
        times=rng.randint(2, 5),
        model=rng.randint(100, 900),
        person=rng.choice(_PERSONS),
    )


def review_texts(data: Path | None) -> list[str] | None:
    """The ``text`` of every review in ``data`` (CSV with a ``text`` column, or JSON
    lines with a ``text`` field), or None without ``data``."""
    if data is None:
        return None
    if data.suffix == ".csv":
        with data.open(newline="", encoding="utf-8") as handle:
            return [row["text"] for row in csv.DictReader(handle) if row.get("text")]
    texts = [orjson.loads(line).get("text") for line in data.read_text().splitlines() if line]
    return [t for t in texts if isinstance(t, str) and t]


class Reviews:
    """An endless stream of review events (key: the product id)."""

    def __init__(self, seed: int, texts: list[str] | None = None) -> None:
        self.rng = random.Random(seed)
        self.texts = texts
        # One sample is cut short on purpose (the demo's dead letter): not repeated here.
        parsed = [_json(line) for line in _sample_lines("reviews.jsonl")]
        self.samples = [s for s in parsed if s is not None]
        self.count = 0

    def text(self) -> tuple[str, int]:
        rng = self.rng
        if self.texts:
            return self.texts[self.count % len(self.texts)], rng.randint(1, 5)
        pool, rating = rng.choices(_MOODS, weights=(4, 3, 2, 1))[0]
        parts = [rng.choice(_OPENERS), *rng.sample(pool, rng.randint(1, 2)), rng.choice(_INTENT)]
        return " ".join(_fill(p, rng) for p in parts if p), rating

    def __next__(self) -> tuple[bytes, bytes]:
        self.count += 1
        rng = self.rng
        if self.texts is None and rng.random() < REPEAT_SHARE:
            event = dict(rng.choice(self.samples))
        else:
            text, rating = self.text()
            event = {"product_id": f"SKU-{rng.randint(1000, 1099)}", "rating": rating,
                     "author": f"user-{rng.randint(1, 5000)}", "text": text}  # fmt: skip
        event["review_id"] = f"r-{self.count}"
        return str(event.get("product_id", "none")).encode(), orjson.dumps(event)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return self


# Variables of the sample log lines: digits after "=" (not status codes), "[", "port ",
# "blk_-" or a letter and "-" or "_" (ids such as u-19311), never those of timestamps.
_VARIABLE = re.compile(r"(?<=[=\[])(?<!status=)\d+|(?<=port )\d+|(?<=_-)\d+|(?<=[A-Za-z][_-])\d+")


class LogLines:
    """An endless stream of log lines (key: none), the samples with fresh values."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lines = _sample_lines("logs.txt")

    def _number(self, match: re.Match[str]) -> str:
        digits = len(match.group())
        return str(self.rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1))

    def __next__(self) -> tuple[bytes | None, bytes]:
        line = self.rng.choice(self.lines)
        return None, _VARIABLE.sub(self._number, line).encode()

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes]]:
        return self
