"""Where in an HTML document a template action prints: what autoescape misses.

HTML-escaping a value is enough in text and in quoted attribute values, but
not everywhere: in a link it must not become ``javascript:…``, inside a
query string it must be percent-encoded (Go's ``html/template`` does both,
and GoTrue templates rely on it: ``…&next={{ .RedirectTo }}``), in an
unquoted attribute a space would start a new attribute, and in a script,
a style or an event handler HTML-escaping protects nothing.

:class:`HtmlContext` follows the template's literal text through a small
HTML tokenizer and tells the translator, for each printing action, which
extra filter applies, or that the place is refused.
"""

from __future__ import annotations

import enum
import re

__all__ = ["HtmlContext", "go_nospace", "go_url_escape", "go_url_filter", "go_url_normalize"]

# Attributes whose value is a URL (Go's attrTypeMap, the ones mail can hold).
_URL_ATTRIBUTES = frozenset(
    [
        "action",
        "background",
        "cite",
        "data",
        "formaction",
        "href",
        "longdesc",
        "poster",
        "src",
        "usemap",
    ]
)
_RAW_TEXT_ELEMENTS = frozenset({"script", "style"})


class _State(enum.Enum):
    TEXT = enum.auto()
    COMMENT = enum.auto()
    TAG_NAME = enum.auto()
    IN_TAG = enum.auto()
    ATTRIBUTE_NAME = enum.auto()
    AFTER_ATTRIBUTE_NAME = enum.auto()
    BEFORE_VALUE = enum.auto()
    VALUE = enum.auto()
    RAW_TEXT = enum.auto()


class HtmlContext:
    """The tokenizer state after the literal text fed so far."""

    def __init__(self) -> None:
        self.state = _State.TEXT
        self.tag = ""
        self.closing = False
        self.attribute = ""
        self.quote = ""  # the value's quote character; "" when unquoted
        self.value_started = False  # the URL value has content before this point
        self.in_query = False  # a "?" or "#" came before this point
        self.pending = ""  # text held back for "<!--" / "-->" / "</script"

    def feed(self, text: str) -> None:
        """Advance over literal template text."""
        text, self.pending = self.pending + text, ""
        index = 0
        while index < len(text):
            index = self._step(text, index)

    def _step(self, text: str, index: int) -> int:
        state, char = self.state, text[index]
        if state is _State.TEXT:
            if text.startswith("<!--", index):
                self.state = _State.COMMENT
                return index + 4
            if char == "<" and index + 1 == len(text):
                self.pending = char  # decided by what follows
            elif char == "<" and (text[index + 1].isalpha() or text[index + 1] == "/"):
                self.state, self.tag = _State.TAG_NAME, ""
                self.closing = text[index + 1] == "/"
                return index + (2 if self.closing else 1)
        elif state is _State.COMMENT:
            end = text.find("-->", index)
            if end < 0:
                self.pending = text[max(index, len(text) - 2) :]
                return len(text)
            self.state = _State.TEXT
            return end + 3
        elif state is _State.RAW_TEXT:
            closing = re.compile(rf"</{self.tag}[\s/>]", re.IGNORECASE).search(text, index)
            if closing is None:
                self.pending = text[max(index, len(text) - len(self.tag) - 2) :]
                return len(text)
            self.state, self.closing = _State.IN_TAG, True
            return closing.end() - 1
        elif state is _State.TAG_NAME:
            if char.isspace() or char in "/>":
                self.state = _State.IN_TAG
                return index
            self.tag += char.lower()
        elif state is _State.IN_TAG:
            if char == ">":
                raw = self.tag in _RAW_TEXT_ELEMENTS and not self.closing
                self.state = _State.RAW_TEXT if raw else _State.TEXT
            elif not char.isspace() and char != "/":
                self.state, self.attribute = _State.ATTRIBUTE_NAME, ""
                return index
        elif state is _State.ATTRIBUTE_NAME:
            if char.isspace() or char in "=/>":
                self.state = _State.AFTER_ATTRIBUTE_NAME
                return index
            self.attribute += char.lower()
        elif state is _State.AFTER_ATTRIBUTE_NAME:
            if char == "=":
                self.state = _State.BEFORE_VALUE
            elif not char.isspace():
                self.state = _State.IN_TAG
                return index
        elif state is _State.BEFORE_VALUE:
            if not char.isspace():
                self._start_value(char if char in "\"'" else "")
                return index + (1 if self.quote else 0)
        else:  # _State.VALUE
            if (self.quote and char == self.quote) or (
                not self.quote and (char.isspace() or char == ">")
            ):
                self.state = _State.IN_TAG
                return index + (1 if self.quote else 0)
            self.value_started = True
            self.in_query = self.in_query or char in "?#"
        return index + 1

    def _start_value(self, quote: str) -> None:
        self.state, self.quote = _State.VALUE, quote
        self.value_started = self.in_query = False

    def action(self) -> tuple[str | None, str | None]:
        """For a printing action here: ``(filter, None)`` or ``(None, refusal)``.

        ``filter`` names the helper to wrap the value in (``None``: plain
        autoescape is enough); ``refusal`` says why no value may print here.
        """
        state = self.state
        if state is _State.BEFORE_VALUE:
            self._start_value("")
            state = _State.VALUE
        if self.pending == "<" and state is _State.TEXT:
            return None, "a value cannot start a tag"
        if state is _State.RAW_TEXT:
            return None, f"a value inside <{self.tag}> is not supported (script or style)"
        if state in (
            _State.TAG_NAME,
            _State.IN_TAG,
            _State.ATTRIBUTE_NAME,
            _State.AFTER_ATTRIBUTE_NAME,
        ):
            return None, "a value inside a tag must be an attribute value"
        if state is not _State.VALUE:
            return None, None
        if self.attribute.startswith("on") or self.attribute == "style":
            return None, f"a value inside the {self.attribute} attribute is not supported"
        filters: list[str] = []
        if self.attribute in _URL_ATTRIBUTES:
            if self.in_query:
                filters.append("go_url_escape")
            elif not self.value_started:
                filters.append("go_url_filter")
            else:
                filters.append("go_url_normalize")
        if not self.quote:
            filters.append("go_nospace")
        return "|".join(filters) or None, None


# Go's urlProcessor: what a normalized URL keeps as it is; the rest is %xx.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_KEPT_BY_NORMALIZE = _UNRESERVED | frozenset("!#$&*+,/:;=?@[]%")
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})


def _percent_encode(text: str, keep: frozenset[str]) -> str:
    # Lower-case hex, as Go writes it, so links render byte-identical.
    return "".join(
        char if char in keep else "".join(f"%{byte:02x}" for byte in char.encode()) for char in text
    )


def go_url_normalize(value: object) -> str:
    """Percent-encode what may not appear in a URL, keep its structure (and ``%``)."""
    return _percent_encode(str(value), _KEPT_BY_NORMALIZE)


def go_url_filter(value: object) -> str:
    """A value that starts a URL: ``#ZgotmplZ`` unless http(s), mailto or relative."""
    text = str(value)
    scheme, colon, _ = text.partition(":")
    if colon and "/" not in scheme and scheme.strip().lower() not in _SAFE_SCHEMES:
        return "#ZgotmplZ"
    return go_url_normalize(text)


def go_url_escape(value: object) -> str:
    """A value inside a query or fragment: everything but unreserved is encoded."""
    return _percent_encode(str(value), _UNRESERVED)


_NOSPACE = re.compile(r"[\s`=\x00]")


def go_nospace(escaped: str) -> str:
    """An HTML-escaped value for an unquoted attribute: no character may end it."""
    return _NOSPACE.sub(lambda match: f"&#{ord(match.group())};", escaped)
