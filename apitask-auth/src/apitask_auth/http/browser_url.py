"""URLs read as a browser reads them (the WHATWG URL Standard), for redirect checks.

Python's ``urlsplit`` follows RFC 3986; browsers follow the WHATWG URL
Standard, and the two disagree exactly where a redirect check can be fooled:

* ``https://evil.com\\@app.example.com/``: for ``urlsplit`` the host is
  ``app.example.com`` (``evil.com\\`` is userinfo); for a browser ``\\`` ends
  the host in http(s) URLs, so the host is ``evil.com``;
* ``https:evil.com``, ``https:/\\evil.com``, ``https:///evil.com``: a browser
  skips any run of ``/`` and ``\\`` after an http(s) scheme;
* tabs and line breaks anywhere are removed, and leading or trailing control
  characters and spaces trimmed (``"\\thttps://..."``);
* the host is percent-decoded, mapped by IDNA (fullwidth ``APP`` letters
  and upper case become ``app``), and a host that ends in a number is an IPv4 address
  in any of the old notations (``2130706433``, ``0x7f.1``, ``127.1``).

:func:`parse_browser_url` applies those rules to an absolute URL and returns
its parts and its serialization, the URL a browser navigates to. It covers
what a redirect needs: http(s), ws(s) and ftp URLs in full; ``file:`` URLs
are refused; other schemes (an app's ``myapp://callback``) are kept as they
are, with the scheme lowercased. It is not a full implementation of the
standard (no relative URLs, no base URL).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

import idna

__all__ = ["BrowserURL", "parse_browser_url"]

_SPECIAL_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# WHATWG "forbidden domain code points" (after percent-decoding), with "%" itself.
_FORBIDDEN_HOST = re.compile(r"[\x00-\x20\x7f#%/:<>?@\[\\\]^|]")
_NUMBER = re.compile(r"(?:0[xX][0-9A-Fa-f]*|[0-9]+)")

# What each part percent-encodes on serialization (WHATWG's sets; "%" is kept,
# so an existing escape is not escaped twice).
_PATH_SAFE = "!$&'()*+,-./:;=@[\\]^_|~%"  # with letters and digits, which quote() keeps
_QUERY_SAFE = _PATH_SAFE + "?`{}"
_FRAGMENT_SAFE = _PATH_SAFE + "?{}#"
_USERINFO_SAFE = "!$&'()*+,-.;=_~%"


@dataclass(frozen=True, slots=True)
class BrowserURL:
    """An absolute URL as a browser would navigate to it.

    Attributes:
        scheme: lowercased.
        host: the host, serialized (ASCII, lowercased, IPv4 dotted, IPv6 in
            brackets); empty for a URL without an authority.
        port: the port, ``None`` when absent or the scheme's default.
        userinfo: whether the authority had an ``@`` (a user name, a password,
            or an empty one).
        special: an http(s), ws(s) or ftp URL, parsed in full; other schemes
            are only cleaned.
        ipv4_written_as_dotted: for an IPv4 host, whether the input already
            wrote it in its usual form (``127.0.0.1``, not ``2130706433``).
        href: the whole URL, serialized: what the browser requests.
    """

    scheme: str
    host: str
    port: int | None
    userinfo: bool
    special: bool
    ipv4_written_as_dotted: bool
    href: str

    @property
    def is_ip(self) -> bool:
        """Whether the host is an IP address (v4 or v6)."""
        return self.host.startswith("[") or _is_ipv4(self.host)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def parse_browser_url(raw: str) -> BrowserURL | None:
    """``raw`` parsed as an absolute URL by the WHATWG rules; ``None`` where a browser fails."""
    # Leading and trailing C0 controls and spaces are trimmed, tabs and line
    # breaks removed wherever they are.
    text = raw.strip("".join(chr(c) for c in range(0x21)))
    text = re.sub(r"[\t\n\r]", "", text)
    scheme, colon, rest = text.partition(":")
    if not colon or _SCHEME.fullmatch(scheme) is None:
        return None  # relative: no base to resolve it against
    scheme = scheme.lower()
    if scheme == "file":
        return None
    if scheme not in _SPECIAL_PORTS:
        return BrowserURL(scheme, "", None, False, False, False, f"{scheme}:{rest}")
    # Special schemes: any run of "/" and "\" before the authority is skipped
    # ("https:evil.com" and "https:\\\\evil.com" are both https://evil.com/).
    rest = rest.lstrip("/\\")
    end = re.search(r"[/\\?#]", rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    userinfo, at, hostport = authority.rpartition("@")
    host_text, port_text = _split_port(hostport)
    host = _parse_host(host_text)
    if host is None or port_text is None:
        return None
    port: int | None = None
    if port_text:
        port = int(port_text)
        if port > 65535:
            return None
        if port == _SPECIAL_PORTS[scheme]:
            port = None
    path, query, fragment = _split_tail(tail)
    username, _, password = userinfo.partition(":")
    credentials = quote(username, safe=_USERINFO_SAFE) if username or password else ""
    if password:
        credentials += ":" + quote(password, safe=_USERINFO_SAFE)
    credentials += "@" if credentials else ""
    href = f"{scheme}://{credentials}{host}" + (f":{port}" if port is not None else "")
    href += _serialize_path(path)
    if query is not None:
        safe = _QUERY_SAFE.replace("'", "")  # special schemes encode "'" in queries
        href += "?" + quote(query, safe=safe)
    if fragment is not None:
        href += "#" + quote(fragment, safe=_FRAGMENT_SAFE)
    dotted = _is_ipv4(host) and unquote_to_bytes(host_text).decode("utf-8", "replace") == host
    return BrowserURL(scheme, host, port, bool(at), True, dotted, href)


def _split_port(hostport: str) -> tuple[str, str | None]:
    """Host and port text; the port is ``None`` when it is not a number."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return hostport, None
        host, after = hostport[: close + 1], hostport[close + 1 :]
        if after and not after.startswith(":"):
            return host, None
        port = after[1:]
    else:
        host, _, port = hostport.partition(":")
    return host, (port if port == "" or (port.isascii() and port.isdigit()) else None)


def _parse_host(text: str) -> str | None:
    """The serialized host, or ``None`` where a browser refuses it."""
    if not text:
        return None
    if text.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        decoded = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        ascii_host = _to_ascii(decoded)
    except idna.IDNAError:
        return None
    if not ascii_host or _FORBIDDEN_HOST.search(ascii_host):
        return None
    labels = ascii_host.split(".")
    last = labels[-2] if labels[-1] == "" and len(labels) > 1 else labels[-1]
    if _NUMBER.fullmatch(last):  # ends in a number: an IPv4 address, or nothing
        return _parse_ipv4(labels)
    return ascii_host


def _to_ascii(host: str) -> str:
    # UTS 46 as browsers apply it: mapping (fullwidth letters, upper case), then
    # Punycode, and a check of existing Punycode ("xn--"). Per label, so that an
    # empty label ("a..b") is kept; a plain ASCII label is only lowercased (the
    # idna package's rules would refuse the "_" browsers accept).
    labels = []
    for label in host.split("."):
        if label.isascii() and not label.lower().startswith("xn--"):
            labels.append(label.lower())
        else:
            labels.append(idna.encode(label, uts46=True).decode("ascii"))
    return ".".join(labels)


def _parse_ipv4(labels: list[str]) -> str | None:
    if labels[-1] == "":
        labels = labels[:-1]
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if not label or _NUMBER.fullmatch(label) is None:
            return None
        if label[:2].lower() == "0x":
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not all(c in "01234567" for c in label):
                return None
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last + sum(n * 256 ** (3 - i) for i, n in enumerate(head))
    return str(ipaddress.IPv4Address(value))


def _split_tail(tail: str) -> tuple[str, str | None, str | None]:
    """Path, query and fragment of what follows the authority."""
    tail, hash_, fragment = tail.partition("#")
    path, question, query = tail.partition("?")
    return path, (query if question else None), (fragment if hash_ else None)


_SINGLE_DOT = {".", "%2e"}
_DOUBLE_DOT = {"..", ".%2e", "%2e.", "%2e%2e"}


def _serialize_path(path: str) -> str:
    """The path with "\\" read as "/", dot segments resolved, and percent-encoded."""
    segments = path.replace("\\", "/").split("/")[1:] if path else [""]
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        lowered = segment.lower()
        if lowered in _DOUBLE_DOT:
            if out:
                out.pop()
            if last:
                out.append("")
        elif lowered in _SINGLE_DOT:
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(quote(segment, safe=_PATH_SAFE) for segment in out)
