"""Message: what is built is checked once, fixed once, and round-trips as JSON."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apitask import TransientError
from apitask.mail import (
    InvalidMessageError,
    MailError,
    Message,
    PermanentMailError,
    TransientMailError,
    check_header,
    make_message_id,
)
from apitask.mail._headers import RESERVED_HEADERS

# Every character a header must never carry: C0 (but tab), DEL, C1, and the
# Unicode line/paragraph separators.
_BREAKERS = [chr(c) for c in (*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))]
_BREAKERS += ["\u2028", "\u2029"]
hostile = st.tuples(st.text(max_size=20), st.sampled_from(_BREAKERS), st.text(max_size=20)).map(
    "".join
)


def test_fields_defaults_and_fixed_identity() -> None:
    message = Message(to="ann@example.com", subject="Hi", text="body")
    assert (message.html, message.headers, message.type) == ("", {}, "mail")
    assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]{16}@localhost>", message.message_id)
    assert message.date.endswith(" GMT")
    assert message.domain == "example.com"
    other = Message(to="ann@example.com", subject="Hi", text="body")
    assert other.message_id != message.message_id


def test_make_message_id_uses_the_domain_and_refuses_non_domains() -> None:
    assert make_message_id("mail.example.org").endswith("@mail.example.org>")
    for bad in ("", "a b", "x@y", "<x>"):
        with pytest.raises(InvalidMessageError, match="not a domain"):
            make_message_id(bad)
    with pytest.raises(InvalidMessageError, match="control character"):
        make_message_id("example.org\r\nBcc: x@evil.test")


def test_headers_are_copied_so_later_changes_cannot_bypass_the_checks() -> None:
    headers = {"X-Kind": "recovery"}
    message = Message(to="a@b.example", subject="s", html="<p>h</p>", headers=headers)
    headers["X-Kind"] = "bad\r\nBcc: x@evil.test"
    assert dict(message.headers) == {"X-Kind": "recovery"}
    with pytest.raises(TypeError):
        message.headers["X-Kind"] = "changed"  # type: ignore[index]


def test_json_round_trip_is_exact() -> None:
    message = Message(
        to="zoë@exämple.com",
        subject="Grüße ✉",
        html="<b>hi</b>",
        text="hi",
        headers={"X-Tag": "a"},
        type="recovery",
    )
    again = Message.from_dict(json.loads(json.dumps(message.to_dict())))
    assert again == message


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"to": "a@b.c"}, "stored message has no 'subject'"),
        ({**Message(to="a@b.c", subject="s", text="t").to_dict(), "headers": []}, "headers"),
        (
            {**Message(to="a@b.c", subject="s", text="t").to_dict(), "headers": {"X": 1}},
            "headers",
        ),
        ({**Message(to="a@b.c", subject="s", text="t").to_dict(), "text": 5}, "'text'"),
    ],
)
def test_from_dict_refuses_broken_payloads(data: dict[str, object], error: str) -> None:
    with pytest.raises(InvalidMessageError, match=error):
        Message.from_dict(data)


def test_a_message_needs_a_body() -> None:
    with pytest.raises(InvalidMessageError, match="html or a text body"):
        Message(to="a@b.c", subject="s")


@pytest.mark.parametrize(
    "to",
    ["", "ann", "ann@", "@b.c", "a@b@c", "a b@c.d", "A <a@b.c>", "a@b.c, x@y.z", "a@b.c;x@y.z"],
)
def test_to_must_be_one_bare_address(to: str) -> None:
    with pytest.raises(InvalidMessageError, match="to"):
        Message(to=to, subject="s", text="t")


@pytest.mark.parametrize("name", sorted(RESERVED_HEADERS | {"bcc", "FROM"}))
def test_extra_headers_cannot_replace_the_messages_own(name: str) -> None:
    with pytest.raises(InvalidMessageError, match="set by the message itself"):
        Message(to="a@b.c", subject="s", text="t", headers={name: "x"})


@pytest.mark.parametrize("name", ["", "X Tag", "X:Tag", "Ünicode", "X\r\nBcc"])
def test_header_names_must_be_field_names(name: str) -> None:
    with pytest.raises(InvalidMessageError, match="field name"):
        Message(to="a@b.c", subject="s", text="t", headers={name: "x"})


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("Subject", "x", "set by the message itself"),
        ("X Tag", "x", "field name"),
        ("X-" + "a" * 80, "x", "over 76 characters"),
        ("X-Tag", "a\r\nBcc: evil@example.com", "header X-Tag contains the control character"),
    ],
)
def test_check_header_is_the_rule_message_applies(name: str, value: str, error: str) -> None:
    """check_header refuses what Message refuses, with the same words, and
    passes what it passes (a tab is folding whitespace)."""
    with pytest.raises(InvalidMessageError, match=error) as alone:
        check_header(name, value)
    with pytest.raises(InvalidMessageError) as built:
        Message(to="a@b.c", subject="s", text="t", headers={name: value})
    assert str(alone.value) == str(built.value)
    check_header("X-Tag", "a\tb")  # no error
    Message(to="a@b.c", subject="s", text="t", headers={"X-Tag": "a\tb"})


@given(value=hostile)
def test_no_control_character_reaches_any_header_field(value: str) -> None:
    base = {"to": "a@b.c", "subject": "s", "text": "t"}
    for field, kwargs in [
        ("to", {**base, "to": f"a{value}@b.c"}),
        ("subject", {**base, "subject": value}),
        ("type", {**base, "type": value}),
        ("message_id", {**base, "message_id": value}),
        ("date", {**base, "date": value}),
        ("header X-Tag", {**base, "headers": {"X-Tag": value}}),
    ]:
        with pytest.raises(InvalidMessageError, match=f"^{field}"):
            Message(**kwargs)  # type: ignore[arg-type]


@given(subject=st.text().filter(lambda s: not any(c in s for c in _BREAKERS)))
def test_any_other_subject_is_kept_verbatim(subject: str) -> None:
    assert Message(to="a@b.c", subject=subject, text="t").subject == subject


def test_error_classes_say_whether_a_retry_can_help() -> None:
    transient = TransientMailError("451 try later", code=451)
    assert isinstance(transient, TransientError)
    assert isinstance(transient, MailError)
    assert transient.code == 451
    assert not isinstance(PermanentMailError("550 no such user", code=550), TransientError)
    invalid = InvalidMessageError("bad")
    assert isinstance(invalid, ValueError)
    assert invalid.code is None
