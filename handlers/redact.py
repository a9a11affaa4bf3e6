"""PII redaction for user text, applied before the text is sent to the model.

Emails, phone numbers, payment card numbers (Luhn-checked), IP addresses and secrets
(API keys, access tokens, JWTs, bearer tokens, ``password=...`` style values) are replaced
by placeholders such as ``[EMAIL]``, so personal data and credentials never leave the
pipeline in a prompt. The placeholders keep enough shape for the model to read the text.

Detection is pure, regex-based and tuned to miss little while leaving ordinary numbers
alone: years, dates, times, versions, short order numbers and amounts are not phones.
Kinds run in a fixed order (secrets, emails, cards, IPs, phones), each on the output of
the one before, and no pattern can match inside a placeholder, so redacting twice changes
nothing. Text with nothing to redact comes back as the very same string object.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = ["ALL_KINDS", "PLACEHOLDERS", "Redacted", "Redactor"]

# The order in which kinds are applied: a secret may contain digits that look like a card
# or a phone, an email may contain digits, and a card number is a run of digit groups
# that the (looser) phone pattern would otherwise take.
ALL_KINDS: Final[tuple[str, ...]] = ("secret", "email", "card", "ip", "phone")
PLACEHOLDERS: Final[Mapping[str, str]] = {kind: f"[{kind.upper()}]" for kind in ALL_KINDS}

Span = tuple[int, int]
_Finder = Callable[[str], list[Span]]

# Character classes shared by several patterns. None of them admits "[" or "]", which is
# what keeps placeholders from being matched, whole or in part.
_HEX = "0-9A-Fa-f"


def _scan(
    pattern: re.Pattern[str],
    accept: Callable[[re.Match[str]], Span | None],
    *,
    skip_rejected: bool = False,
) -> _Finder:
    """A finder that yields the spans ``accept`` keeps among the pattern's candidates.

    After a rejected candidate the search resumes one character later (lookbehinds keep
    that from re-entering a token), or past the whole candidate with ``skip_rejected``.
    """
    search = pattern.search

    def find(text: str) -> list[Span]:
        spans: list[Span] = []
        pos = 0
        while (match := search(text, pos)) is not None:
            span = accept(match)
            if span is None:
                pos = match.end() if skip_rejected else match.start() + 1
            else:
                spans.append(span)
                pos = span[1]
        return spans

    return find


def _whole(match: re.Match[str]) -> Span:
    return match.span()


# --- secrets -------------------------------------------------------------------------

_SECRET_KEY_WORDS = (
    r"api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret|token|credentials?"
    r"|passw(?:or)?d|passphrase|pwd"
)
_PASSWORD_KEY = re.compile(r"(?i:passw(?:or)?d|passphrase|pwd)")

_SECRET = re.compile(
    rf"""
    (?<![\w-])
    (?P<token>
        sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{{20,}}
      | (?:AKIA|ASIA)[0-9A-Z]{{16}}
      | gh[pousr]_[A-Za-z0-9]{{30,}}
      | github_pat_[A-Za-z0-9_]{{30,}}
      | xox[abpr]-[A-Za-z0-9-]{{10,}}
      | eyJ[A-Za-z0-9_-]{{4,}}\.eyJ[A-Za-z0-9_-]{{4,}}\.[A-Za-z0-9_-]*
    )
    (?![\w-])
  | (?<![\w-])(?i:bearer|basic)[ \t]+(?P<bearer>[A-Za-z0-9._~+/-]++=*+)
  | (?<![\w.-])
    (?P<quote>["']?)
    (?P<key>(?:[A-Za-z0-9]++[_.-])*(?i:{_SECRET_KEY_WORDS})(?:[_.-][A-Za-z0-9]++)*+)
    (?P=quote)
    [ \t]*(?P<sep>:=|=>|[:=])[ \t]*["']?
    (?P<value>[^\s"'`,;&<>()\[\]{{}}\\]+)
    """,
    re.VERBOSE,
)


def _entropy(value: str) -> float:
    """Shannon entropy of the characters of ``value``, in bits per character."""
    size = len(value)
    return -sum(n / size * math.log2(n / size) for n in Counter(value).values())


def _char_classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


def _looks_random(value: str, min_len: int) -> bool:
    """True for token-like values: long, mixed characters, high entropy."""
    if len(value) < min_len or _char_classes(value) < 2:
        return False
    if len(value) < 20 and not any(c.isdigit() for c in value):
        return False  # a capitalised word is not a key; short keys always carry digits
    return _entropy(value) >= 3.0


def _accept_secret(match: re.Match[str]) -> Span | None:
    if match.group("token") is not None:
        return match.span("token")
    if match.group("bearer") is not None:
        return match.span("bearer") if _looks_random(match.group("bearer"), 12) else None
    value = match.group("value").rstrip(".")
    if not value:
        return None
    start = match.start("value")
    span = (start, start + len(value))
    if _PASSWORD_KEY.search(match.group("key")):
        if "=" in match.group("sep"):
            return span if len(value) >= 4 else None
        # "password: Please ..." in prose is not a password; one with a digit or symbol is.
        has_non_letter = any(not c.isalpha() for c in value)
        return span if len(value) >= 6 and has_non_letter else None
    return span if _looks_random(value, 12) else None


# --- emails --------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])"
    r"[\w%+-]++(?:\.[\w%+-]++)*+"
    r"@(?:[^\W_][\w-]*+\.)+[^\W\d_]{2,63}"
    r"(?![\w%+-])(?!\.[^\W_])"
)


# --- cards ---------------------------------------------------------------------------

_CARD = re.compile(
    r"(?<![\w.,+-])"
    r"(?:\d{13,19}|\d{4}(?P<sep>[ -])\d{3,6}(?!\d)(?:(?P=sep)\d{3,6}(?!\d)){1,4})"
    r"(?!\w)(?![.,]\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0 and digits.strip("0") != ""


def _accept_card(match: re.Match[str]) -> Span | None:
    sep = match.group("sep")
    if sep is None:
        return match.span() if _luhn(match.group()) else None
    # Groups may run on into an expiry date or a CVV: keep the longest valid prefix.
    groups = match.group().split(sep)
    for k in range(len(groups), 1, -1):
        digits = "".join(groups[:k])
        if 13 <= len(digits) <= 19 and _luhn(digits):
            return match.start(), match.start() + len(sep.join(groups[:k]))
    return None


# --- IP addresses --------------------------------------------------------------------

_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?!\w)(?!\.\d)")
_IPV6 = re.compile(
    rf"(?<![\w:.])(?=[{_HEX}]*:[{_HEX}]*:)"
    rf"(?:[{_HEX}:]*:(?:\d{{1,3}}\.){{3}}\d{{1,3}}|[{_HEX}:]++)"
    r"(?![\w:])(?!\.\d)"
)


def _accept_ipv4(match: re.Match[str]) -> Span | None:
    try:
        ipaddress.IPv4Address(match.group())
    except ValueError:  # an octet over 255 or with a leading zero
        return None
    return match.span()


def _accept_ipv6(match: re.Match[str]) -> Span | None:
    text = match.group()
    if not any(c.isdigit() for c in text):
        return None  # "::" and hex-only words such as "dead::beef" are not worth the risk
    try:
        ipaddress.IPv6Address(text)
    except ValueError:  # times such as 12:30:45, MAC addresses, C++ scopes
        return None
    return match.span()


_find_ipv4 = _scan(_IPV4, _accept_ipv4)
_find_ipv6 = _scan(_IPV6, _accept_ipv6)


def _find_ip(text: str) -> list[Span]:
    v4 = _find_ipv4(text)
    if ":" not in text:
        return v4
    # An IPv6 address may end in an IPv4 one (::ffff:192.0.2.1): the longer match wins.
    v6 = _find_ipv6(text)
    if not v6:
        return v4
    return sorted(v6 + [span for span in v4 if not _overlaps(span, v6)])


def _overlaps(span: Span, others: list[Span]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in others)


# --- phones --------------------------------------------------------------------------

# A candidate is a run of digit groups joined by at most one space, dot or dash, possibly
# after a "+", with at most one group in parentheses, first or second ("+44 (0)20 ...").
# Whether it is a phone is decided in code. The context rules are symmetric on purpose: a
# phone may be followed by what may start another ("+", "("), and those may follow a digit,
# so two adjacent phones are judged the same whether the other one is redacted yet or not.
_PHONE = re.compile(
    r"(?:(?=[+(])(?<![^\W\d])(?<![+/.,#@$%-])"
    r"|(?<![\w+/.,#@$%-])(?<!\d[: ]))"
    r"\+?(?:\(\d{1,5}\)|\d++)(?:[ .-]?\(\d{1,5}\))?(?:[ .-]?\d++)*+"
    r"(?![\w@])(?![.,:/]\d)"
)
_PHONE_PART = re.compile(r"\(\d+\)|\d+|[ .-]")
_YEAR = re.compile(r"(?:1[89]|20)\d\d")


class _Group(NamedTuple):
    digits: str
    paren: bool
    sep: str  # the separator before this group, "" for none


def _phone_groups(candidate: str) -> list[_Group]:
    groups: list[_Group] = []
    sep = ""
    for part in _PHONE_PART.findall(candidate):
        if part in " .-":
            sep = part
        else:
            paren = part[0] == "("
            groups.append(_Group(part.strip("()"), paren, sep))
            sep = ""
    return groups


def _is_phone(candidate: str) -> bool:
    plus = candidate[0] == "+"
    groups = _phone_groups(candidate[1:] if plus else candidate)
    parens = [i for i, g in enumerate(groups) if g.paren]
    if len(parens) > 1 or groups[-1].paren:
        return False
    digits = sum(len(g.digits) for g in groups)
    first = groups[0].digits
    double_zero = (
        not plus and not groups[0].paren and len(groups) > 1 and 3 <= len(first) <= 5
    ) and first.startswith("00")
    if plus or (double_zero and not first.startswith("000")):
        # International: +CC or 00CC, then up to 15 digits in all (E.164).
        if parens and parens[0] != 1:
            return False
        return 8 <= digits - (2 if double_zero else 0) <= 15
    return _is_national_phone(groups, parens, digits)


def _is_national_phone(groups: list[_Group], parens: list[int], digits: int) -> bool:
    if len(groups) < 2 or not 7 <= digits <= 12:
        return False  # a bare run of digits is an id, an amount or a timestamp
    if parens and parens[0] != 0:
        return False
    body = groups[1:] if parens else groups
    if parens and not 2 <= len(groups[0].digits) <= 5:
        return False
    lengths = [len(g.digits) for g in body]
    if not parens and lengths[0] > 5:
        return False
    if any(not 2 <= n <= 8 for n in lengths[1:]):
        return False
    seps = {g.sep for g in body[1:]}
    if len(seps) > 1:
        return False  # "2024-01-15 10" is a date and an hour, not one number
    sep = seps.pop() if seps else ""
    if sep == ".":
        return lengths == [3, 3, 4] or (bool(parens) and lengths == [3, 4])
    if parens:
        return True
    return not (_is_date(lengths) or _is_years(body) or _is_thousands(body, lengths, sep))


def _is_date(lengths: list[int]) -> bool:
    if len(lengths) != 3:
        return False
    a, b, c = lengths
    return (a == 4 and b <= 2 and c <= 2) or (c == 4 and a <= 2 and b <= 2)


def _is_years(body: list[_Group]) -> bool:
    return all(_YEAR.fullmatch(g.digits) for g in body)


def _is_thousands(body: list[_Group], lengths: list[int], sep: str) -> bool:
    return (
        sep == " "
        and len(lengths) >= 3
        and lengths[0] <= 3
        and not body[0].digits.startswith("0")
        and all(n == 3 for n in lengths[1:])
    )


def _accept_phone(match: re.Match[str]) -> Span | None:
    return match.span() if _is_phone(match.group()) else None


# --- the redactor --------------------------------------------------------------------

_DIGIT = re.compile(r"\d")


def _needs_digit(find: _Finder) -> _Finder:
    def guarded(text: str) -> list[Span]:
        return find(text) if _DIGIT.search(text) else []

    return guarded


def _needs_at(find: _Finder) -> _Finder:
    def guarded(text: str) -> list[Span]:
        return find(text) if "@" in text else []

    return guarded


_FINDERS: Final[Mapping[str, _Finder]] = {
    "secret": _scan(_SECRET, _accept_secret),
    "email": _needs_at(_scan(_EMAIL, _whole)),
    "card": _needs_digit(_scan(_CARD, _accept_card)),
    "ip": _needs_digit(_find_ip),
    # A rejected phone candidate is a whole run of digit groups: no part of it is a phone.
    "phone": _needs_digit(_scan(_PHONE, _accept_phone, skip_rejected=True)),
}


@dataclass(frozen=True, slots=True)
class Redacted:
    """Redacted text and how many matches of each kind were replaced (non-zero only)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict, hash=False)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Redactor:
    """Replaces the configured kinds of PII in text by placeholders; see ``ALL_KINDS``.

    Kinds are applied in the order of ``ALL_KINDS`` whatever order they are given in.
    Instances are immutable and safe to share between tasks and threads.
    """

    __slots__ = ("_finders", "_kinds")

    def __init__(self, kinds: Collection[str] = ALL_KINDS) -> None:
        if isinstance(kinds, str):
            raise TypeError(f"kinds must be a collection of kind names, not the string {kinds!r}")
        unknown = sorted(set(kinds) - set(ALL_KINDS))
        if unknown:
            raise ValueError(
                f"unknown redaction kind(s): {', '.join(map(repr, unknown))}; "
                f"accepted kinds: {', '.join(ALL_KINDS)}"
            )
        self._kinds: tuple[str, ...] = tuple(k for k in ALL_KINDS if k in kinds)
        self._finders = tuple((k, _FINDERS[k], PLACEHOLDERS[k]) for k in self._kinds)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The configured kinds, in the order they are applied."""
        return self._kinds

    def __repr__(self) -> str:
        return f"Redactor(kinds={self._kinds!r})"

    def redact(self, text: str) -> Redacted:
        """Replace every match of the configured kinds in ``text`` by its placeholder."""
        counts: dict[str, int] = {}
        for kind, find, placeholder in self._finders:
            spans = find(text)
            if spans:
                text = _splice(text, spans, placeholder)
                counts[kind] = len(spans)
        return Redacted(text, counts)


def _splice(text: str, spans: list[Span], placeholder: str) -> str:
    """``text`` with each of the sorted, disjoint ``spans`` replaced by ``placeholder``."""
    parts: list[str] = []
    pos = 0
    for start, end in spans:
        parts.append(text[pos:start])
        parts.append(placeholder)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
