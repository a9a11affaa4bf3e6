"""The variables Drain3 masks before clustering: shapes that are values on any system.

Each is a Drain3 ``MaskingInstruction`` replacing the value with ``<*>``, so a masked
token is a wildcard in Drain's prefix tree and similarity. They name kinds of value
(addresses, ids, numbers), never a system's words. Every pattern is a single pass with
bounded lookarounds (no nested repetition), so masking is linear in the line's length.
"""

from __future__ import annotations

from typing import Any

# Delimiters of a value: start/end of the line or a character that is not part of a word.
_B = r"(?<![\w.:/-])"
_E = r"(?![\w.:/-])"

# fmt: off
GENERAL: tuple[tuple[str, str], ...] = (
    ("url", r"\b[a-zA-Z][\w+.-]*://[^\s,;)\]'\"]+"),
    ("uuid", r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b"),
    ("ip", r"(?<![\w.])/?(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"),
    ("hex", r"\b0[xX][0-9a-fA-F]+\b"),
    ("path", r"(?<![\w/.:])(?:/[\w.@%+~,-]+){2,}/?"),
    ("number", _B + r"[-+]?\d+(?:[.,:]\d+)*" + _E),
)
# fmt: on
MASK_SETS: dict[str, tuple[tuple[str, str], ...]] = {
    "general": GENERAL,
    "numbers": GENERAL[-1:],  # numbers only: the least a masker does
    "none": (),  # Drain alone (with its own numeric-token wildcard)
}


def instructions(name: str) -> list[Any]:
    """The Drain3 masking instructions of a mask set (``general``, ``numbers``, ``none``)."""
    from drain3.masking import MaskingInstruction  # type: ignore[import-untyped]  # noqa: PLC0415

    try:
        chosen = MASK_SETS[name]
    except KeyError:
        raise ValueError(f"unknown mask set {name!r}; accepted: {', '.join(MASK_SETS)}") from None
    return [MaskingInstruction(pattern, "*") for _, pattern in chosen]
