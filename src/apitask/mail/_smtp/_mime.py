"""A :class:`Message` and a sender as RFC 5322 bytes, built directly and cheaply.

Building an :class:`email.message.EmailMessage` and flattening it costs about
2 ms per text+HTML mail; the bytes below cost a few tens of microseconds,
because the shape is always one of two (a single text part, or
``multipart/alternative`` with text then HTML) and every choice is made by a
fast test:

* Header text that is plain printable ASCII (words separated by single
  spaces, no ``=?``) is written as is, folded at its spaces; anything else
  (non-ASCII, tabs, runs of spaces, a would-be encoded-word) becomes RFC 2047
  ``B`` encoded-words, split on character boundaries and folded, so a parser
  gives back exactly the original text.
* A body that is printable ASCII with lines of at most 998 octets goes as
  ``7bit``; otherwise the smaller of quoted-printable and base64 (both
  computed in C). Line breaks become CRLF, as MIME text requires; a
  single-part body also ends with one (the SMTP layer would add it anyway).
* The MIME boundary is derived from the Message-ID, so the same message and
  sender always give the same bytes (retries are byte-identical). Encoded
  parts cannot contain it (``=_`` never occurs in quoted-printable or base64
  output), and a 7bit part that contains ``=_`` is sent quoted-printable.

Dot-stuffing and the final ``.`` are the SMTP layer's job (aiosmtplib does
both), not this module's.

International addresses: a non-ASCII domain is written in its IDNA
(punycode) form, which every server accepts; a non-ASCII local part cannot be
rewritten, so the result says ``smtputf8=True`` and the client must find the
server's SMTPUTF8 extension or refuse the mail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InvalidMessageError
from .._headers import check_bare_address, check_header_text

if TYPE_CHECKING:
    from .._message import Message

__all__ = ["Envelope", "Sender", "parse_sender", "render", "split_mailbox"]

# Printable ASCII words separated by single spaces: safe to write verbatim.
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*")
# A display name that needs no quoting: RFC 5322 atoms separated by single spaces.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Body text that may go as 7bit: printable ASCII, tabs and line feeds.
_SEVEN_BIT = re.compile(r"[\t\n -~]*")
# A dot-atom local part; non-ASCII letters allowed (RFC 6531), whitespace not.
_LOCAL = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f\s])+"
    r"(?:\.(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f\s])+)*"
)
# An ASCII host name (after IDNA encoding).
_DOMAIN = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")

_LINE = 78  # RFC 5322 "SHOULD" line length for headers we fold
_MAX_LINE = 998  # RFC 5322 "MUST" line length, without CRLF
_MAX_NAME = 600  # a plain (quoted) display name, leaving room for the address
_WORD_BYTES = 45  # UTF-8 bytes per encoded-word: 60 base64 chars, 75 in all


@dataclass(frozen=True, slots=True)
class Sender:
    """The From address, parsed and checked once (at client construction).

    Attributes:
        address: the envelope address (``MAIL FROM``), domain in IDNA form.
        name: the display name, possibly empty.
        header: the complete ``From:`` header line, CRLF included.
        smtputf8: the address has a non-ASCII local part.
    """

    address: str
    name: str
    header: str
    smtputf8: bool


@dataclass(frozen=True, slots=True)
class Envelope:
    """What goes on the wire for one message.

    Attributes:
        sender: the ``MAIL FROM`` address.
        recipient: the ``RCPT TO`` address.
        data: the message bytes, CRLF line endings, not dot-stuffed.
        smtputf8: the server must offer SMTPUTF8 for this message.
    """

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool


def parse_sender(sender: str) -> Sender:
    """Parse ``addr`` or ``Name <addr>`` (the name may be double-quoted).

    White space in the name is folded to single spaces, as a reader
    of the phrase would.

    Raises:
        InvalidMessageError: the sender is not one safe address.
    """
    name, address = split_mailbox("sender", sender)
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    # A display name is a phrase: a run of white space in it means one
    # space (parsers read it so, Python's included), so say that here, once.
    name = " ".join(name.split())
    wire, smtputf8 = _wire_address("sender", address)
    header = f"From: {_mailbox(name, wire)}\r\n"
    return Sender(address=wire, name=name, header=header, smtputf8=smtputf8)


def split_mailbox(field: str, text: str) -> tuple[str, str]:
    """The display name (as written, or ``""``) and the address of ``addr`` or ``Name <addr>``.

    Raises:
        InvalidMessageError: a control character (a line break) anywhere in ``text``.
    """
    address = check_header_text(field, text).strip()
    if address.endswith(">") and "<" in address:
        start = address.rindex("<")
        return address[:start].strip(), address[start + 1 : -1]
    return "", address


def render(message: Message, sender: Sender) -> Envelope:
    """Return the envelope and RFC 5322 bytes for ``message`` from ``sender``.

    Raises:
        InvalidMessageError: a field cannot be written safely (an address that
            is not a dot-atom, a lone surrogate, an over-long Message-ID...).
    """
    recipient, to_smtputf8 = _wire_address("to", message.to)
    for field, value in (("message_id", message.message_id), ("date", message.date)):
        if not value.isascii() or len(value) > _LINE * 10:
            raise InvalidMessageError(f"{field} must be ASCII and at most {_LINE * 10} characters")
    head = [
        sender.header,
        f"To: {recipient}\r\n",
        _unstructured("Subject", message.subject),
        f"Date: {message.date}\r\n",
        f"Message-ID: {message.message_id}\r\n",
        "MIME-Version: 1.0\r\n",
    ]
    head.extend(_unstructured(name, value) for name, value in message.headers.items())
    if message.text and message.html:
        boundary = "=_" + hashlib.sha256(message.message_id.encode()).hexdigest()[:32]
        head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
        delimiter = f"--{boundary}\r\n".encode()
        body = b"".join(
            (
                delimiter,
                _part("plain", message.text, multipart=True),
                b"\r\n",
                delimiter,
                _part("html", message.html, multipart=True),
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
    elif message.text:
        body = _part("plain", message.text, multipart=False)
    else:
        body = _part("html", message.html, multipart=False)
    data = _encode("message headers", "".join(head)) + body
    return Envelope(
        sender=sender.address,
        recipient=recipient,
        data=data,
        smtputf8=sender.smtputf8 or to_smtputf8,
    )


def _encode(field: str, text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidMessageError(f"{field} contain a character UTF-8 cannot encode") from exc


def _wire_address(field: str, address: str) -> tuple[str, bool]:
    """The address as sent (IDNA domain), and whether it needs SMTPUTF8."""
    check_bare_address(field, address)
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        import idna  # only for international domains; a dependency of the mail extra

        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidMessageError(f"{field} domain {domain!r} is not a valid IDN") from exc
    if _LOCAL.fullmatch(local) is None or _DOMAIN.fullmatch(domain) is None:
        raise InvalidMessageError(  # without the address: it may be a recipient's
            f"{field} is not a plain address (dot-atom local part and host name)"
        )
    return f"{local}@{domain}", not local.isascii()


def _is_plain(text: str) -> bool:
    return text.isascii() and "=?" not in text and _PLAIN.fullmatch(text) is not None


def _encoded_words(text: str) -> str:
    """RFC 2047 B-encoded words for ``text``, split on characters, folded."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        point = ord(char)
        width = 1 if point < 0x80 else 2 if point < 0x800 else 3 if point < 0x10000 else 4
        if size + width > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    words.append("".join(chunk))
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(_encode('header text', word)).decode()}?=" for word in words
    )


def _unstructured(name: str, value: str) -> str:
    """One unstructured header (Subject, extra headers), folded, CRLF included."""
    if not value:
        return f"{name}: \r\n"
    if _is_plain(value):
        if len(name) + 2 + len(value) <= _LINE:
            return f"{name}: {value}\r\n"
        folded = _fold(len(name) + 2, value)
        if folded is not None:
            return f"{name}: {folded}\r\n"
    return f"{name}: {_encoded_words(value)}\r\n"


def _fold(used: int, value: str) -> str | None:
    """Fold plain text at its single spaces; ``None`` if a word is too long."""
    lines: list[str] = []
    line = ""
    for word in value.split(" "):
        if len(word) > _MAX_LINE - 100:  # room for the longest header name
            return None
        if line and used + len(line) + 1 + len(word) > _LINE:
            lines.append(line)
            line, used = word, 1  # a continuation line starts with the space
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    # The space kept at the start of each continuation line is the one the
    # text had there, so unfolding (removing CRLF) restores the text exactly.
    return "\r\n ".join(lines)


def _mailbox(name: str, address: str) -> str:
    """``address`` or ``name <address>`` with the name quoted or encoded as needed."""
    if not name:
        return address
    if len(name) <= _MAX_NAME and _is_plain(name):
        if _ATOMS.fullmatch(name):
            return f"{name} <{address}>"
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>'
    # Readers disagree on the space between two encoded-words in a phrase
    # (RFC 2047 drops it, Python's parser keeps one), so an encoded display
    # name must fit in one encoded-word for every reader to see the same name.
    encoded = _encoded_words(name)
    if "\r\n" in encoded:
        raise InvalidMessageError(
            f"sender name {name!r} needs RFC 2047 encoding and is over {_WORD_BYTES} "
            "UTF-8 bytes; shorten it"
        )
    return f"{encoded} <{address}>"


def _part(subtype: str, text: str, *, multipart: bool) -> bytes:
    """Content headers, a blank line and the encoded ``text`` body."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not multipart and not text.endswith("\n"):
        text += "\n"
    if (
        _SEVEN_BIT.fullmatch(text) is not None
        and (len(text) <= _MAX_LINE or max(map(len, text.split("\n"))) <= _MAX_LINE)
        and not (multipart and "=_" in text)
    ):
        encoding, payload = "7bit", text.replace("\n", "\r\n").encode("ascii")
    else:
        raw = _encode(f"{subtype} body", text)
        quoted = binascii.b2a_qp(raw, istext=True)
        # base64: 4 characters per 3 bytes, plus CRLF per 76 characters.
        base64_size = (len(raw) + 2) // 3 * 4 * 78 // 76
        if len(quoted) + quoted.count(b"\n") <= base64_size:
            encoding, payload = "quoted-printable", quoted.replace(b"\n", b"\r\n")
        else:
            raw = raw.replace(b"\n", b"\r\n")
            encoding = "base64"
            payload = base64.encodebytes(raw).replace(b"\n", b"\r\n")
            if multipart:
                payload = payload[:-2]  # the CRLF before the boundary belongs to it
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + payload
