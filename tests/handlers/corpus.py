"""A generated corpus of bad input, per input kind, with what each case is.

Every case is a record value (and sometimes odd headers) that a route of that kind must
refuse: the handler raises ``BadInput`` naming the problem, and the runtime dead-letters
the original bytes. Seeded, so a failing case can be replayed by its name.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from schemas.records import Headers

TEXT_FIELD = {"review": "text", "post": "text", "log": "message"}


@dataclass(frozen=True)
class Case:
    name: str
    value: bytes | None
    expect: str  # a fragment the error message must contain
    headers: Headers = ()


def _words(rng: random.Random) -> str:
    return " ".join(rng.choice(["good", "bad", "box", "late", "ok", "nice"]) for _ in range(5))


def cases(
    kind: str, per_class: int = 20, seed: int = 7, max_bytes: int = 1_000_000
) -> Iterator[Case]:
    """``14 * per_class`` cases of ``kind`` (review, post, or log as JSON from a shipper);
    ``max_bytes`` is the route's ``max_event_bytes`` the too-large cases exceed."""
    rng = random.Random(seed)
    field = TEXT_FIELD[kind]
    odd_headers: Headers = (("", b"\x00"), ("x-\u00e9", b"\xff" * 3), ("dup", b"1"), ("dup", b"2"))
    for i in range(per_class):
        text = _words(rng)
        yield Case(f"not-json-{i}", b"{" + text.encode() + b" ]", "not valid JSON")
        broken = bytes([0xC3, 0x28 + i % 8])  # a UTF-8 lead byte without its continuation
        yield Case(f"invalid-utf8-{i}", b'{"' + field.encode() + b'": "' + broken + b'"}',
                   "not valid JSON")  # fmt: skip
        yield Case(f"json-array-{i}", orjson.dumps([text, i]), "JSON list")
        yield Case(f"json-number-{i}", str(rng.randrange(10**9)).encode(), "JSON int")
        yield Case(f"wrong-type-{i}", orjson.dumps({field: rng.randrange(100)}),
                   "Input should be a valid string")  # fmt: skip
        yield Case(f"missing-text-{i}", orjson.dumps({"id": i, "title": text}), "Field required")
        yield Case(f"empty-text-{i}", orjson.dumps({field: ""}), "at least 1 character")
        yield Case(f"too-large-{i}", orjson.dumps({field: "x" * (max_bytes + i)}), "bytes; at most")
        depth = 1100 + i
        yield Case(f"deep-{i}", b'{"a":' * depth + b"1" + b"}" * depth, "levels deep")
        # Deep enough to break serialisers and recursion (254-1,023), not the parser.
        middle = 254 + (i * 97) % 770
        yield Case(f"deep-middle-{i}", b'{"' + field.encode() + b'": "x", "a":' + b"[" * middle
                   + b"]" * middle + b"}", "levels deep")  # fmt: skip
        yield Case(f"blank-text-{i}", orjson.dumps({field: " \t\n " * (i + 1)}), "whitespace")
        yield Case(f"huge-number-{i}", b'{"' + field.encode() + b'": "x", "n": 1e' +
                   str(400 + i).encode() + b"}", "not valid JSON")  # fmt: skip
        yield Case(f"duplicate-key-{i}", b'{"' + field.encode() + b'": "a", "' + field.encode()
                   + b'": "' + text.encode() + b'"}', "appears twice")  # fmt: skip
        yield Case(f"null-{i}", None, "no value")
        yield Case(f"nul-bytes-{i}", b"\x00" * (i + 1) + text.encode(), "not valid JSON",
                   odd_headers)  # fmt: skip
        yield Case(f"lone-surrogate-{i}", b'{"' + field.encode() + b'": "\\ud800' + text.encode()
                   + b'"}', "not valid JSON")  # fmt: skip
