"""PII redaction: what each kind catches, what it leaves alone, and that it is stable."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.redact import ALL_KINDS, PLACEHOLDERS, Redacted, Redactor

REDACTOR = Redactor()


def _only(kind: str, text: str) -> Redacted:
    return Redactor((kind,)).redact(text)


def _digits_of(text: str, zero: str) -> str:
    """``text`` with its ASCII digits written in the script whose zero is ``zero``."""
    return text.translate({ord("0") + i: ord(zero) + i for i in range(10)})


# --- every kind: caught ---------------------------------------------------------------

CAUGHT: list[tuple[str, str]] = [
    ("email", "john.doe@example.com"),
    ("email", "j.o-e+tag@mail.example.co.uk"),
    ("email", "user_1%x@sub-domain.example.org"),
    ("email", "émile@exemple.fr"),
    ("phone", "+1 415-555-0132"),
    ("phone", "(415) 555 0132"),
    ("phone", "(415) 555-0132"),
    ("phone", "+1 (415) 555-0132"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+44 (0)20 7946 0958"),
    ("phone", "0049 30 1234567"),
    ("phone", "+14155550132"),
    ("phone", "415-555-0132"),
    ("phone", "415.555.0132"),
    ("phone", "1-800-555-0132"),
    ("phone", "020 7946 0958"),
    ("phone", "07700 900123"),
    ("phone", "030 1234567"),
    ("phone", "555-0132"),
    ("phone", "+33 6 12 34 56 78"),
    ("phone", "01 23 45 67 89"),
    ("phone", _digits_of("090-1234-5678", "\uff10")),  # fullwidth digits
    ("card", "4111 1111 1111 1111"),
    ("card", "4111-1111-1111-1111"),
    ("card", "4111111111111111"),
    ("card", "5500 0000 0000 0004"),
    ("card", "3782 822463 10005"),
    ("card", "4222222222222"),
    ("card", _digits_of("4111111111111111", "\u0660")),  # Arabic-Indic digits
    ("ip", "192.168.1.10"),
    ("ip", "8.8.8.8"),
    ("ip", "255.255.255.255"),
    ("ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ip", "2001:db8::8a2e:370:7334"),
    ("ip", "fe80::1"),
    ("ip", "::1"),
    ("ip", "2001:db8::"),
    ("ip", "::ffff:192.0.2.1"),
    ("secret", "sk-abcdefghijklmnopqrstuvwxyz123456"),
    ("secret", "sk-proj-abcDEF123_ghiJKL456-mnoPQR789"),
    ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("secret", "gho_abcdefghijklmnopqrstuvwxyz0123456789"),
    ("secret", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("secret", "xoxb-1234567890-abcdefghij"),
    ("secret", "xoxp-1234567890-0987654321-abcdef"),
    (
        "secret",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
]


@pytest.mark.parametrize(("kind", "value"), CAUGHT)
def test_each_kind_is_replaced_by_its_placeholder(kind: str, value: str) -> None:
    """The value alone, and inside a sentence, becomes the kind's placeholder."""
    placeholder = PLACEHOLDERS[kind]
    alone = REDACTOR.redact(value)
    assert alone.text == placeholder
    assert alone.counts == {kind: 1}
    sentence = REDACTOR.redact(f"Hi, it's ({value}), see you.")
    assert sentence.text == f"Hi, it's ({placeholder}), see you."
    assert sentence.total == 1


# --- every kind: left alone -----------------------------------------------------------

LEFT_ALONE: list[tuple[str, str]] = [
    ("email", "user at example dot com"),
    ("email", "@mention on the forum"),
    ("email", "root@localhost"),
    ("email", "a@b.c"),
    ("phone", "in 2024 we grew"),
    ("phone", "from 1990-2000 and 2019 2020"),
    ("phone", "on 2024-01-15 at 10:30"),
    ("phone", "on 2024-01-15 10:30:45"),
    ("phone", "15.01.2024 and 15/01/2024 and 15 01 2024"),
    ("phone", "at 12:30:45"),
    ("phone", "version 1.2.3 and v10.4.1 and 10.0.19045.2965"),
    ("phone", "order 12345 and #123456"),
    ("phone", "order 1234567890 at 1700000000"),
    ("phone", "1 234 567 people"),
    ("phone", "ISBN 978-3-16-148410-0"),
    ("phone", "pay $1 500 000"),
    ("phone", "1,234,567.89"),
    ("phone", "192.168.1.10"),
    ("card", "4111 1111 1111 1112"),
    ("card", "4111111111111112"),
    ("card", "0000 0000 0000 0000"),
    ("card", "1234 5678"),
    ("card", "12345678901234567890"),
    ("card", "3.14159265358979323"),
    ("ip", "256.1.1.1"),
    ("ip", "192.168.01.1"),
    ("ip", "1.2.3"),
    ("ip", "1.2.3.4.5"),
    ("ip", "v1.2.3.4"),
    ("ip", "12:30:45"),
    ("ip", "00:1A:2B:3C:4D:5E"),
    ("ip", "std::vector and dead::beef and a :: b"),
    ("ip", "1:2:3:4:5:6:7:8:9"),
    ("secret", "sk-learn and task-force"),
    ("secret", "AKIA1234"),
    ("secret", "ghp_short"),
    ("secret", "Bearer of bad news; Bearer Authentication"),
    ("secret", "max_tokens=4096 and token: yes"),
    ("secret", "secret=mysupersecretvalue"),
    ("secret", "Reset your password: Please click the link"),
    ("secret", "password="),
    ("secret", "eyJhbGciOiJIUzI1NiJ9 alone"),
]


@pytest.mark.parametrize(("kind", "text"), LEFT_ALONE)
def test_each_kind_leaves_lookalikes_alone(kind: str, text: str) -> None:
    """Near misses of a kind are not redacted as that kind."""
    assert kind not in REDACTOR.redact(text).counts
    assert _only(kind, text).text is text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key=Zx81kQ2mP0vL7rT9aB3c", "api_key=[SECRET]"),
        ("X-Api-Key: 9f8e7d6c5b4a39281706", "X-Api-Key: [SECRET]"),
        ("password=hunter2", "password=[SECRET]"),
        ('{"password": "s3cr3t!!"}', '{"password": "[SECRET]"}'),
        ("db.password: hunter22.", "db.password: [SECRET]."),
        ("token: abc123def456ghi", "token: [SECRET]"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None),
        ("/cb?access_token=a1b2c3d4e5f6g7h8i9&x=1", "/cb?access_token=[SECRET]&x=1"),
        ("Authorization: Bearer abcDEF123456ghiJKL789", "Authorization: Bearer [SECRET]"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "Authorization: Basic [SECRET]"),
        ("export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789", None),
        ("Cookie: sessionid=a8F3kL9mQ2xZ7pW4", "Cookie: sessionid=[SECRET]"),
        ("X-Auth-Token: 9f8e7d6c5b4a39281706", "X-Auth-Token: [SECRET]"),
    ],
)
def test_secret_values_keep_their_key(text: str, expected: str | None) -> None:
    """For key=value and bearer secrets only the value goes; the key gives the model context."""
    key = text.split("=", maxsplit=1)[0]
    result = REDACTOR.redact(text)
    assert result.text == (expected or f"{key}=[SECRET]")
    assert result.counts == {"secret": 1}


# --- Luhn and the card/phone boundary -------------------------------------------------


def test_card_numbers_must_pass_luhn() -> None:
    """A valid test card is redacted; one digit off, it is neither a card nor a phone."""
    assert REDACTOR.redact("card 4111 1111 1111 1111 ok").text == "card [CARD] ok"
    wrong = "card 4111 1111 1111 1112 ok"
    result = REDACTOR.redact(wrong)
    assert result.text is wrong
    assert result.counts == {}


def test_card_followed_by_expiry_and_cvv_is_cut_at_the_number() -> None:
    """Groups that run on past the number (a CVV) stay; the number itself goes."""
    result = REDACTOR.redact("4111 1111 1111 1111 123 exp 12/27")
    assert result.text == "[CARD] 123 exp 12/27"


def test_cards_are_not_taken_as_phones() -> None:
    """Cards run before phones, so a card is counted as a card, never as a phone."""
    result = REDACTOR.redact("pay with 4111-1111-1111-1111 or call 415-555-0132")
    assert result.text == "pay with [CARD] or call [PHONE]"
    assert result.counts == {"card": 1, "phone": 1}


def test_secrets_run_before_phones_and_cards() -> None:
    """Digits inside a secret are part of the secret, not a phone or a card."""
    text = "password=415-555-0132, pwd=4111111111111111 and sk-4111111111111111415555"
    result = REDACTOR.redact(text)
    assert result.text == "password=[SECRET], pwd=[SECRET] and [SECRET]"
    assert result.counts == {"secret": 3}


def test_adjacent_phones_are_each_redacted() -> None:
    """Phones glued to each other or to a scheme are found one by one."""
    result = REDACTOR.redact("tel:+14155550132+44 20 7946 0958 (415) 555-0132 (415) 555-0133")
    assert result.text == "tel:[PHONE][PHONE] [PHONE] [PHONE]"
    assert result.counts == {"phone": 4}


def test_overlapping_candidates_do_not_garble() -> None:
    """An email with digits, an IP in a URL, a JWT in a bearer header: one placeholder each."""
    text = (
        "mail 4155550132@example.com from 10.0.0.1:8080 with "
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlMTIz"
    )
    result = REDACTOR.redact(text)
    assert result.text == "mail [EMAIL] from [IP]:8080 with Bearer [SECRET]"
    assert result.counts == {"email": 1, "ip": 1, "secret": 1}


# --- the API --------------------------------------------------------------------------


def test_nothing_to_redact_returns_the_same_string() -> None:
    """Clean text costs no copy: the very same object comes back, with no counts."""
    text = "The quick brown fox jumps over the lazy dog in 2024, version 1.2.3."
    result = REDACTOR.redact(text)
    assert result.text is text
    assert result.counts == {}
    assert result.total == 0


def test_counts_are_per_kind_and_non_zero() -> None:
    """Counts name only the kinds that matched; total adds them up."""
    text = "a@example.com, b@example.org, 8.8.8.8"
    result = REDACTOR.redact(text)
    assert result.counts == {"email": 2, "ip": 1}
    assert result.total == 3


def test_configured_kinds_limit_what_is_redacted() -> None:
    """Only the configured kinds are replaced; the others stay verbatim."""
    text = "mail a@example.com, call +1 415-555-0132 from 8.8.8.8"
    assert Redactor(frozenset({"email"})).redact(text).text == (
        "mail [EMAIL], call +1 415-555-0132 from 8.8.8.8"
    )
    assert Redactor(("ip", "phone")).redact(text).text == (
        "mail a@example.com, call [PHONE] from [IP]"
    )
    assert Redactor(()).redact(text).text is text


def test_kinds_apply_in_a_fixed_order() -> None:
    """The order kinds are given in does not matter: cards still come before phones."""
    redactor = Redactor(("phone", "card"))
    assert redactor.kinds == ("card", "phone")
    assert redactor.redact("4111 1111 1111 1111").text == "[CARD]"
    assert Redactor().kinds == ALL_KINDS


def test_unknown_kind_is_a_value_error_naming_it_and_the_accepted_kinds() -> None:
    """The message names the bad kind and lists every accepted one."""
    with pytest.raises(ValueError, match="unknown redaction kind") as info:
        Redactor(("email", "ssn"))
    message = str(info.value)
    assert "'ssn'" in message
    for kind in ALL_KINDS:
        assert kind in message


def test_a_bare_string_of_kinds_is_refused() -> None:
    """A string is a collection of letters, not of kinds: it is refused, not misread."""
    with pytest.raises(TypeError, match="collection of kind names"):
        Redactor("email")


def test_redacted_is_frozen() -> None:
    """Results cannot be changed after the fact."""
    result = REDACTOR.redact("a@example.com")
    with pytest.raises(AttributeError):
        result.text = "x"  # type: ignore[misc]


# --- properties -----------------------------------------------------------------------

_PII = [value for _, value in CAUGHT]
_LOOKALIKES = [text for _, text in LEFT_ALONE]
_PIECES = ["api_key=", "password: ", "token=", "Bearer ", "sk-", "eyJ", "00", "+", "::", "@"]
_FRAGMENTS = st.one_of(
    st.sampled_from(_PII),
    st.sampled_from(_LOOKALIKES),
    st.sampled_from(list(PLACEHOLDERS.values())),
    st.sampled_from(_PIECES),
    st.text(alphabet="0123456789 .-:+()", max_size=20),
    st.text(alphabet="0123456789abcdefABCDEF:.", max_size=20),
    st.text(alphabet="0123456789 .-:+()[]@=/abcdefXYZ_\"'", max_size=12),
    st.text(max_size=8),
)
_SEPARATORS = st.sampled_from(
    ["", " ", "  ", ", ", ".", "-", ":", "\n", "(", ")", "[", "]", "=", "@", "+", "/"]
)


@st.composite
def _texts(draw: st.DrawFn) -> str:
    fragments = draw(st.lists(_FRAGMENTS, max_size=8))
    return "".join(fragment + draw(_SEPARATORS) for fragment in fragments)


@settings(max_examples=1000, deadline=None)
@given(_texts(), st.sets(st.sampled_from(ALL_KINDS), min_size=1))
def test_redaction_is_idempotent(text: str, kinds: set[str]) -> None:
    """Redacting a redacted text changes nothing and finds nothing."""
    redactor = Redactor(kinds)
    once = redactor.redact(text)
    twice = redactor.redact(once.text)
    assert twice.text == once.text
    assert twice.counts == {}


_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in PLACEHOLDERS.values()))


@settings(max_examples=1000, deadline=None)
@given(_texts())
def test_placeholders_are_never_partially_rematched(text: str) -> None:
    """Every placeholder in the input survives intact, and no match cuts into one."""
    result = REDACTOR.redact(text)
    before = _PLACEHOLDER.findall(text)
    after = _PLACEHOLDER.findall(result.text)
    assert len(after) == len(before) + result.total
    # Stripping the placeholders leaves none of the brackets they were made of.
    assert _PLACEHOLDER.sub("", result.text).count("[") == _PLACEHOLDER.sub("", text).count("[")


@given(
    st.lists(st.sampled_from(list(PLACEHOLDERS.values())), min_size=1, max_size=6),
    _SEPARATORS,
)
def test_text_made_of_placeholders_is_left_as_is(placeholders: list[str], sep: str) -> None:
    """Placeholders, however joined, are inert."""
    text = sep.join(placeholders)
    assert REDACTOR.redact(text).text is text
