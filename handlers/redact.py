"""PII redaction for user text, applied before the text is sent to the model.

Emails, phone numbers, payment card numbers (Luhn-checked), IP addresses and secrets
(API keys, access tokens, JWTs, bearer tokens, ``password=...`` style values) are replaced
by placeholders such as ``[EMAIL]``, so personal data and credentials never leave the
pipeline in a prompt. The placeholders keep enough shape for the model to read the text.

Detection is pure, regex-based and tuned to miss little while leaving ordinary numbers
alone: years, dates, times, versions, short order numbers and amounts are not phones.
Kinds run in a fixed order (secrets, emails, cards, IPs, phones), each on the output of
the one before; no pattern can match inside a placeholder, and passes repeat until one
finds nothing, so redacting twice changes nothing. Text with nothing to redact comes back
as the very same string object, after a few cheap checks.
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

# A placeholder is an upper-case word in brackets. No pattern below admits a bracket or
# matches a bare upper-case word, so placeholders are never matched, whole or in part,
# and no match reaches across one.


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

_SENSITIVE_KEYS = (
    r"api[_-]?key|apikey|access[_-]?key|private[_-]?key|secret|token|credentials?"
    r"|passw(?:or)?d|passphrase|pwd|auth|session(?:id)?"
)
_PASSWORD_KEY = re.compile(r"(?i:passw(?:or)?d|passphrase|pwd)")

# Secrets with a recognisable shape. They are found first, so that a key=value pattern
# cannot start inside one (JWT segments and dotted keys share their alphabet).
_SECRET_TOKEN = re.compile(
    r"""
    (?<![\w-])
    (?:
        sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}
      | (?:AKIA|ASIA)[0-9A-Z]{16}
      | gh[pousr]_[A-Za-z0-9]{30,}
      | github_pat_[A-Za-z0-9_]{30,}
      | xox[abpr]-[A-Za-z0-9-]{10,}
      | eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*
    )
    (?![\w-])
    """,
    re.VERBOSE,
)

# Secrets known by their context: an authorization scheme ...
_AUTH_SCHEME = re.compile(r"(?<![\w-])(?i:bearer|basic)[ \t]+(?P<value>[A-Za-z0-9._~+/-]++=*+)")
# ... or a secret-sounding key before ":", "=", ":=" or "=>". Regex engines are slow to
# find case-insensitive words, so the separator is found first and the key is the run of
# key characters just before it (maybe quoted, maybe followed by blanks).
_KEY_VALUE_SEP = re.compile(r"[:=](?:(?<=:)=|(?<==)>)?")  # : = := =>
_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_KEY = re.compile(
    rf"(?<![\w.-])(?:[A-Za-z0-9]++[_.-])*(?i:{_SENSITIVE_KEYS})(?:[_.-][A-Za-z0-9]++)*+"
)
_KEY_MAX_LEN = 100
_VALUE = re.compile(r"""[ \t]*["']?(?P<value>[^\s"'`,;&<>()\[\]{}\\=]++=*+)""")


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
    if not any(c.isdigit() for c in value):
        # Keys without a digit are long and of mixed case; "Authentication" is a word
        # and "AWS_SECRET_ACCESS_KEY" a name.
        mixed_case = any(c.islower() for c in value) and any(c.isupper() for c in value)
        if len(value) < 20 or not mixed_case:
            return False
    return _entropy(value) >= 3.0


def _accept_auth_scheme(match: re.Match[str]) -> Span | None:
    return match.span("value") if _looks_random(match.group("value"), 12) else None


def _find_key_values(text: str) -> list[Span]:
    spans: list[Span] = []
    pos = 0
    for sep in _KEY_VALUE_SEP.finditer(text):
        if sep.start() < pos:
            continue
        key = _key_before(text, pos, sep.start())
        value = _VALUE.match(text, sep.end()) if key is not None else None
        if key is None or value is None:
            continue
        span = _accept_key_value(key, sep.group(), value)
        if span is not None:
            spans.append(span)
            pos = span[1]
    return spans


def _key_before(text: str, low: int, end: int) -> str | None:
    """The sensitive key that ends just before ``end`` (blanks and a quote aside)."""
    while end > low and text[end - 1] in " \t":
        end -= 1
    if end > low and text[end - 1] in "\"'":
        end -= 1
    start = end
    while start > low and end - start <= _KEY_MAX_LEN and text[start - 1] in _KEY_CHARS:
        start -= 1
    key = _KEY.fullmatch(text, start, end) if start < end else None
    return None if key is None else key.group()


def _accept_key_value(key: str, sep: str, match: re.Match[str]) -> Span | None:
    value = match.group("value").rstrip(".")
    start = match.start("value")
    span = (start, start + len(value))
    if _PASSWORD_KEY.search(key):
        if "=" in sep:
            return span if len(value) >= 4 else None
        # "password: Please ..." in prose is not a password; one with a digit or symbol is.
        has_non_letter = any(not c.isalpha() for c in value)
        return span if len(value) >= 6 and has_non_letter else None
    return span if _looks_random(value, 12) else None


# --- emails --------------------------------------------------------------------------

# Each "@" is found first; the local part is matched backwards from it (it is at most 64
# characters long), the domain forwards. Scanning every position for a local part would
# cost far more on text that holds an email.
_EMAIL_LOCAL = re.compile(r"(?<![\w.%+-])[\w%+-]++(?:\.[\w%+-]++)*+\Z")
_EMAIL_LOCAL_MAX_LEN = 64
_EMAIL_DOMAIN = re.compile(r"(?:[^\W_][\w-]*+\.)+[^\W\d_]{2,63}(?![\w%+-])(?!\.[^\W_])")


def _find_emails(text: str) -> list[Span]:
    spans: list[Span] = []
    pos = 0
    at = text.find("@")
    while at >= 0:
        local = _EMAIL_LOCAL.search(text, max(pos, at - _EMAIL_LOCAL_MAX_LEN), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local is not None else None
        if local is not None and domain is not None:
            spans.append((local.start(), domain.end()))
            pos = domain.end()
        at = text.find("@", max(pos, at + 1))
    return spans


# --- cards ---------------------------------------------------------------------------

# 13 to 19 digits, run together or in groups (the first of four digits) split by one
# space or dash. Patterns start by consuming a digit where they can, which lets the regex
# engine skip ahead to the next digit instead of trying every position.
_CARD = re.compile(
    r"\d(?<![\w.,+-]\d)"
    r"(?:\d{12,18}|\d{3}(?P<sep>[ -])\d{3,6}(?!\d)(?:(?P=sep)\d{3,6}(?!\d)){1,4})"
    r"(?!\w)(?![.,]\d)"
)


def _luhn(digits: str) -> bool:
    """The Luhn checksum of card numbers (an all-zero number does not count)."""
    total = 0
    nonzero = False
    for i, char in enumerate(reversed(digits)):
        n = int(char)  # any Unicode decimal digit, as ``\d`` matches
        nonzero = nonzero or n != 0
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return nonzero and total % 10 == 0


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

# Four dotted numbers; the standard library checks the octets.
_IPV4 = re.compile(r"\d(?<![\w.]\d)(?<!::\d)\d{0,2}(?:\.\d{1,3}){3}(?!\w)(?!\.\d)(?!::)")
# A run of hex digits and colons, with two colons at least, maybe ending in an IPv4
# address; the standard library decides whether it is an address.
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)"
    r"(?:[0-9A-Fa-f:]*:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f:]++)"
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
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]*:")


def _find_ip(text: str) -> list[Span]:
    v4 = _find_ipv4(text)
    if _IPV6_HINT.search(text) is None:
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
    r"""
    (?:
        \+ (?<![^\W\d]\+)(?<![+/.,#@$%-]\+) (?:\(\d{1,5}\)|\d++)
      | \( (?<![^\W\d]\()(?<![+/.,#@$%-]\() \d{1,5}\)
      | \d (?<![\w+/.,#@$%-]\d)(?<![\w:]:\d)(?<!\d[ ]\d)
        (?=(?:[ .()-]{0,3}\d){6})  # seven digits at least, or it cannot be a phone
        \d*+
    )
    (?:[ .-]?\(\d{1,5}\))?
    (?:[ .-]?\d++)*+
    (?![\w@])(?![.,:/]\d)(?!::)
    """,
    re.VERBOSE,
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


_INTL_PREFIX = re.compile(r"00[1-9]\d{0,2}")  # 00 and a country code, as dialled in Europe


def _is_phone(candidate: str) -> bool:
    plus = candidate.startswith("+")
    groups = _phone_groups(candidate.removeprefix("+"))
    parens = [i for i, g in enumerate(groups) if g.paren]
    if len(parens) > 1 or groups[-1].paren:
        return False
    digits = sum(len(g.digits) for g in groups)
    first = groups[0]
    double_zero = (
        not plus
        and len(groups) > 1
        and not first.paren
        and _INTL_PREFIX.fullmatch(first.digits) is not None
    )
    if plus or double_zero:
        # International: +CC or 00CC, then at most 15 digits in all (E.164); a group in
        # parentheses only after the country code: +44 (0)20 ..., +1 (415) ...
        return parens in ([], [1]) and 8 <= digits - 2 * double_zero <= 15
    return _is_national_phone(groups, bool(parens), digits)


def _is_national_phone(groups: list[_Group], paren: bool, digits: int) -> bool:
    # The area code may come first in parentheses; the rest is the body.
    body = groups[1:] if paren else groups
    lengths = [len(g.digits) for g in body]
    seps = {g.sep for g in body[1:]}
    plausible = (
        len(groups) >= 2  # a bare run of digits is an id, an amount or a timestamp
        and 7 <= digits <= 12
        and (not paren or (groups[0].paren and 2 <= len(groups[0].digits) <= 5))
        and (paren or lengths[0] <= 5)
        and all(2 <= n <= 8 for n in (lengths if paren else lengths[1:]))
        and len(seps) <= 1  # "2024-01-15 10" is a date and an hour, not one number
    )
    if not plausible:
        return False
    sep = seps.pop() if seps else ""
    if sep == ".":  # dots only in the North American 415.555.0132
        return lengths == [3, 3, 4] or (paren and lengths == [3, 4])
    return paren or not (_is_date(lengths) or _is_years(body) or _is_thousands(body, sep))


def _is_date(lengths: list[int]) -> bool:
    """2024-01-15, 15 01 2024 and the like."""
    if len(lengths) != 3:
        return False
    a, b, c = lengths
    return (a == 4 and b <= 2 and c <= 2) or (c == 4 and a <= 2 and b <= 2)


def _is_years(body: list[_Group]) -> bool:
    """1990-2000, 2019 2020 2021."""
    return all(_YEAR.fullmatch(g.digits) for g in body)


def _is_thousands(body: list[_Group], sep: str) -> bool:
    """1 234 567: an amount written with spaces between thousands."""
    return (
        sep == " "
        and len(body) >= 3
        and len(body[0].digits) <= 3
        and not body[0].digits.startswith("0")
        and all(len(g.digits) == 3 for g in body[1:])
    )


def _accept_phone(match: re.Match[str]) -> Span | None:
    return match.span() if _is_phone(match.group()) else None


# --- the redactor --------------------------------------------------------------------

_DIGIT = re.compile(r"\d")
_TOKEN_MARKS = (
    *("sk-", "AKIA", "ASIA", "xox", "eyJ"),
    *("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
)
_KEY_MARKS = ("key", "secret", "token", "credential", "pass", "pwd", "auth", "session")


class _Facts:
    """Cheap facts about a text that tell which stages cannot match, each found once.

    A "no" holds for every later version of the text too: redaction removes digits and
    splices in placeholders, no mark can span a placeholder's brackets, and the one mark
    inside a placeholder ("secret" in "[SECRET]") cannot start a match there.
    """

    __slots__ = ("_digits", "_folded", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._digits = -1
        self._folded = ""

    @property
    def digits(self) -> int:
        if self._digits < 0:
            text = self.text
            # str.count is much faster than a regex
            self._digits = (
                sum(map(text.count, "0123456789")) if text.isascii() else len(_DIGIT.findall(text))
            )
        return self._digits

    @property
    def folded(self) -> str:
        if not self._folded:
            self._folded = self.text.lower()
        return self._folded


class _Stage(NamedTuple):
    kind: str
    gate: Callable[[_Facts], bool]
    find: _Finder


# Each kind is found in stages; each stage runs on the output of the one before. A stage
# whose gate says no is skipped for the whole call, so clean text costs little.
_STAGES: Final[tuple[_Stage, ...]] = (
    _Stage(
        "secret",
        lambda facts: any(mark in facts.text for mark in _TOKEN_MARKS),
        _scan(_SECRET_TOKEN, _whole),
    ),
    _Stage(
        "secret",
        lambda facts: "bearer" in facts.folded or "basic" in facts.folded,
        _scan(_AUTH_SCHEME, _accept_auth_scheme),
    ),
    _Stage(
        "secret",
        lambda facts: any(mark in facts.folded for mark in _KEY_MARKS),
        _find_key_values,
    ),
    _Stage("email", lambda facts: "@" in facts.text, _find_emails),
    _Stage("card", lambda facts: facts.digits >= 13, _scan(_CARD, _accept_card)),
    _Stage("ip", lambda facts: facts.digits >= 1, _find_ip),
    # A rejected phone candidate is a whole run of digit groups: no part of it is a phone.
    _Stage(
        "phone",
        lambda facts: facts.digits >= 7,
        _scan(_PHONE, _accept_phone, skip_rejected=True),
    ),
)
# A placeholder could expose a neighbour that the text it replaced was shielding (the
# patterns look at the characters around a match), so passes repeat until one finds
# nothing: redacting redacted text is then a no-op by construction. One pass finds
# everything in all but contrived text, and text with nothing to redact takes one pass.
# Every productive pass replaces text outside placeholders, so the bound is never reached.
_MAX_PASSES: Final = 8


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

    __slots__ = ("_kinds", "_stages")

    def __init__(self, kinds: Collection[str] = ALL_KINDS) -> None:
        if isinstance(kinds, str):
            raise TypeError(f"kinds must be a collection of kind names, not the string {kinds!r}")
        unknown = [kind for kind in dict.fromkeys(kinds) if kind not in ALL_KINDS]
        if unknown:
            raise ValueError(
                f"unknown redaction kind(s): {', '.join(map(repr, unknown))}; "
                f"accepted kinds: {', '.join(ALL_KINDS)}"
            )
        self._kinds: tuple[str, ...] = tuple(k for k in ALL_KINDS if k in kinds)
        self._stages = tuple(stage for stage in _STAGES if stage.kind in self._kinds)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The configured kinds, in the order they are applied."""
        return self._kinds

    def __repr__(self) -> str:
        return f"Redactor(kinds={self._kinds!r})"

    def redact(self, text: str) -> Redacted:
        """Replace every match of the configured kinds in ``text`` by its placeholder."""
        facts = _Facts(text)
        stages = [stage for stage in self._stages if stage.gate(facts)]
        counts: dict[str, int] = {}
        for _ in range(_MAX_PASSES if stages else 0):
            found = False
            for kind, _gate, find in stages:
                spans = find(text)
                if spans:
                    text = _splice(text, spans, PLACEHOLDERS[kind])
                    counts[kind] = counts.get(kind, 0) + len(spans)
                    found = True
            if not found:
                break
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
