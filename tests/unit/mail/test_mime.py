"""Message -> RFC 5322 bytes: what the stdlib parser reads back is what was built."""

from __future__ import annotations

import email
import email.message
import re
from email.policy import default
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from apitask.mail import InvalidMessageError, Message
from apitask.mail._smtp._mime import parse_sender, render

# Characters Message refuses in header fields (tested in test_message.py).
_BREAKERS = {chr(c) for c in (*range(0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))}
_BREAKERS |= {"\u2028", "\u2029"}
header_text = st.text(st.characters(codec="utf-8", exclude_characters=_BREAKERS), max_size=120)
body_text = st.text(st.characters(codec="utf-8"), max_size=400)
# A mix that exercises every encoding: ASCII, long lines, CJK, CR/LF variants.
bodies = st.one_of(
    body_text,
    st.text(st.sampled_from("ab =._\n\r"), max_size=3000),
    st.text(st.sampled_from("漢字かなé \n"), max_size=500),
)


def parse(data: bytes) -> email.message.EmailMessage:
    """Parse delivered bytes; SMTPUTF8 messages carry raw UTF-8 headers."""
    message = email.message_from_string(data.decode(), policy=default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def canonical(text: str, *, final_newline: bool) -> str:
    """What a text body reads as after transport: CRLF line breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if final_newline and not text.endswith("\n"):
        text += "\n"
    return text.replace("\n", "\r\n")


def assert_wire_safe(data: bytes) -> None:
    """CRLF only, and no line over 998 octets."""
    assert re.search(rb"(?<!\r)\n|\r(?!\n)", data) is None
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@settings(max_examples=300, deadline=None)
@given(
    subject=header_text,
    name=header_text,
    value=header_text,
    text=bodies,
    html=bodies,
)
def test_headers_bodies_and_charsets_round_trip_exactly(
    subject: str, name: str, value: str, text: str, html: str
) -> None:
    if not text and not html:
        html = "<p>x</p>"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    try:
        sender = parse_sender(f'"{quoted}" <no-reply@example.com>')
    except InvalidMessageError as exc:  # a long name that needs encoding
        assert "shorten it" in str(exc)
        assume(False)
    message = Message(
        to="ann@example.org", subject=subject, text=text, html=html, headers={"X-Tag": value}
    )
    envelope = render(message, sender)
    assert envelope == render(message, sender)  # byte-identical on every retry
    assert (envelope.sender, envelope.recipient) == ("no-reply@example.com", "ann@example.org")
    assert not envelope.smtputf8
    assert_wire_safe(envelope.data)
    parsed = parse(envelope.data)
    assert parsed.defects == []
    assert [key.lower() for key in parsed] == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "x-tag",
        "content-type",
        *(["content-transfer-encoding"] if not (text and html) else []),
    ]
    assert parsed["subject"] == subject
    assert parsed["x-tag"] == value
    (mailbox,) = parsed["from"].addresses
    assert sender.name == " ".join(name.split())
    assert (mailbox.display_name, mailbox.addr_spec) == (sender.name, "no-reply@example.com")
    assert parsed["to"].addresses[0].addr_spec == "ann@example.org"
    assert parsed["message-id"] == message.message_id
    assert parsed["date"].datetime == parsedate_to_datetime(message.date)
    parts = list(parsed.iter_parts()) if text and html else [parsed]
    expected = [(t, subtype) for t, subtype in ((text, "plain"), (html, "html")) if t]
    assert [part.get_content_type() for part in parts] == [f"text/{s}" for _, s in expected]
    for part, (body, _) in zip(parts, expected, strict=True):
        assert part.get_content_charset() == "utf-8"
        assert part.get_content() == canonical(body, final_newline=len(parts) == 1)


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("plain ascii\nlines", "7bit"),
        ("x" * 999, "quoted-printable"),
        ("caf\u00e9 au lait, mostly ascii", "quoted-printable"),
        ("漢字" * 100, "base64"),
        ("a line with =_ in it", "7bit"),  # single part: no boundary to collide with
    ],
)
def test_the_cheapest_safe_transfer_encoding_is_chosen(text: str, encoding: str) -> None:
    message = Message(to="a@b.example", subject="s", text=text)
    parsed = parse(render(message, parse_sender("a@b.example")).data)
    assert parsed["content-transfer-encoding"] == encoding


def test_a_7bit_part_that_could_contain_the_boundary_is_encoded() -> None:
    message = Message(to="a@b.example", subject="s", text="see --=_ here", html="<p>plain</p>")
    text_part, html_part = parse(render(message, parse_sender("a@b.example")).data).iter_parts()
    assert text_part["content-transfer-encoding"] == "quoted-printable"
    assert html_part["content-transfer-encoding"] == "7bit"
    assert text_part.get_content() == "see --=_ here"


def test_the_boundary_follows_the_message_id() -> None:
    sender = parse_sender("a@b.example")
    first = Message(to="a@b.example", subject="s", text="t", html="h", message_id="<1@x>")
    again = Message(to="a@b.example", subject="s", text="t", html="h", message_id="<1@x>")
    other = Message(to="a@b.example", subject="s", text="t", html="h", message_id="<2@x>")
    assert render(first, sender).data == render(again, sender).data
    boundary = parse(render(first, sender).data).get_boundary()
    assert boundary is not None
    assert boundary != parse(render(other, sender).data).get_boundary()


@pytest.mark.parametrize(
    ("sender", "name", "header"),
    [
        ("no-reply@example.com", "", "From: no-reply@example.com\r\n"),
        ("Acme <no-reply@example.com>", "Acme", "From: Acme <no-reply@example.com>\r\n"),
        ('"Acme, Inc." <a@example.com>', "Acme, Inc.", 'From: "Acme, Inc." <a@example.com>\r\n'),
        ('"Say \\"hi\\"" <a@example.com>', 'Say "hi"', 'From: "Say \\"hi\\"" <a@example.com>\r\n'),
        ("A<b <a@example.com>", "A<b", 'From: "A<b" <a@example.com>\r\n'),
        ("Zoë <a@example.com>", "Zoë", "From: =?utf-8?b?Wm/Dqw==?= <a@example.com>\r\n"),
    ],
)
def test_sender_forms(sender: str, name: str, header: str) -> None:
    parsed = parse_sender(sender)
    assert (parsed.name, parsed.header, parsed.smtputf8) == (name, header, False)


def test_an_encoded_sender_name_must_fit_one_encoded_word() -> None:
    assert parse_sender("Zoë Ünïcödé-Bücher <a@example.com>").name == "Zoë Ünïcödé-Bücher"
    with pytest.raises(InvalidMessageError, match="shorten it"):
        parse_sender("Zoë Ünïcödé-Bücher " * 3 + "<a@example.com>")


def test_international_addresses() -> None:
    sender = parse_sender("Büro <büro@exämple.de>")
    assert (sender.address, sender.smtputf8) == ("büro@xn--exmple-cua.de", True)
    envelope = render(Message(to="ann@bücher.example", subject="s", text="t"), sender)
    assert envelope.recipient == "ann@xn--bcher-kva.example"
    assert envelope.smtputf8  # because of the sender's local part
    ascii_sender = parse_sender("a@example.com")
    assert not render(Message(to="a@bücher.example", subject="s", text="t"), ascii_sender).smtputf8
    utf8 = render(Message(to="zoë@example.org", subject="s", text="t"), ascii_sender)
    assert utf8.smtputf8
    assert parse(utf8.data)["to"].addresses[0].addr_spec == "zoë@example.org"


@pytest.mark.parametrize(
    ("to", "error"),
    [
        ('"quoted"@example.org', "not a plain address"),
        ("a..b@example.org", "not a plain address"),
        ("a(comment)@example.org", "not a plain address"),
        ("a@exa mple.org", "not a single e-mail address"),
        ("a@[127.0.0.1]", "not a plain address"),
        ("a@bü..example", "not a valid IDN"),
        ("a@\u2603.example", "not a valid IDN"),
    ],
)
def test_addresses_that_cannot_be_written_plainly_are_refused(to: str, error: str) -> None:
    try:
        message = Message(to=to, subject="s", text="t")
    except InvalidMessageError as exc:  # some are already refused by Message
        assert re.search(error, str(exc))
        return
    with pytest.raises(InvalidMessageError, match=error):
        render(message, parse_sender("a@example.com"))


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "lone \udc80 surrogate"},
        {"text": "lone \udc80 surrogate"},
        {"headers": {"X-Tag": "\ud800"}},
        {"message_id": "<ü@x>"},
        {"date": "x" * 781},
    ],
)
def test_fields_that_cannot_be_encoded_are_refused(fields: dict[str, object]) -> None:
    message = Message(**{"to": "a@b.example", "subject": "s", "text": "t", **fields})  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError):
        render(message, parse_sender("a@example.com"))


def test_long_plain_subjects_fold_at_their_spaces() -> None:
    subject = " ".join(["word"] * 60)
    data = render(Message(to="a@b.example", subject=subject, text="t"), parse_sender("a@b.c")).data
    head = data.split(b"\r\n\r\n")[0].decode()
    assert "=?" not in head
    assert max(len(line) for line in head.split("\r\n")) <= 78
    assert parse(data)["subject"] == subject
    giant = "x" * 950 + " y"
    data = render(Message(to="a@b.example", subject=giant, text="t"), parse_sender("a@b.c")).data
    assert b"=?utf-8?b?" in data
    assert parse(data)["subject"] == giant


def test_header_names_are_bounded_so_lines_stay_short() -> None:
    with pytest.raises(InvalidMessageError, match="over 76 characters"):
        Message(to="a@b.example", subject="s", text="t", headers={"X" * 77: "v"})
