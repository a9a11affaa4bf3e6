"""Synthetic labelled reviews: the label follows a few words, so a student can learn it."""

from __future__ import annotations

import random

GOOD = ("great", "lovely", "excellent", "superb", "delightful", "wonderful")
BAD = ("awful", "terrible", "broken", "horrible", "useless", "dreadful")
FILLER = ("the", "pizza", "service", "room", "staff", "was", "really", "quite", "today",
          "our", "visit", "and", "price", "food", "table", "night")  # fmt: skip


def reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs, each text unique."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "positive" if rng.random() < 0.5 else "negative"
        words = [rng.choice(FILLER) for _ in range(8)]
        cues = GOOD if label == "positive" else BAD
        for _ in range(2):
            words.insert(rng.randrange(len(words)), rng.choice(cues))
        out.append((" ".join(words) + f" visit {i}", label))
    return out
