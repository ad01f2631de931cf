"""Redirect URLs and the external URL of links (§1.6, §2 "Links").

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from apitask_auth.http.browser_url import BrowserURL, parse_browser_url

if TYPE_CHECKING:
    from fastapi import Request

    from apitask_auth.config import Settings

__all__ = ["action_link", "allowed_redirect", "is_redirect_valid", "redirect_to"]


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    # gobwas/glob with separators '.' and '/': '*' stops at a separator, '**' does not.
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append(r"[^./]*")
        elif char == "?":
            out.append(r"[^./]")
        else:
            out.append(re.escape(char))
        index += 1
    return re.compile("".join(out))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# GoTrue refuses a redirect with any ASCII control character or space in it
# (IsRedirectURLValid): browsers drop some of them, which changes the URL.
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
# GoTrue's regularHostname, for http(s) hosts (here after IDNA: Punycode passes).
_REGULAR_HOST = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?")


@lru_cache(maxsize=16)
def _site(site_url: str) -> BrowserURL | None:
    return parse_browser_url(site_url)


def _rfc3986_host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def allowed_redirect(settings: Settings, url: str | None) -> str | None:
    """Where a browser sent to ``url`` would go, if that is allowed; else ``None``.

    ``url`` is read as a browser reads it (:mod:`.browser_url`), so a check
    cannot be fooled by a URL that Python and the browser read differently
    (``https://evil.com\\@app.example.com/``). Allowed: SITE_URL's scheme,
    host and port (any port on a loopback host), or a
    ``GOTRUE_URI_ALLOW_LIST`` glob. Refused, as GoTrue does: control
    characters or spaces anywhere, IP addresses other than loopback, IPv4
    addresses written in another form than dotted decimal, http(s) hosts
    with unusual characters; and, beyond GoTrue, any user name or password
    (``https://app.example.com@evil.com``). The result is the browser's
    serialization of the URL (the input only where it is that, less the
    root path's ``/``): that is what goes into mails, links and ``Location``.
    """
    if not url or _CONTROL_OR_SPACE.search(url):
        return None
    parsed = parse_browser_url(url)
    if parsed is None:
        return None
    # The input where it already reads the same everywhere, except for the
    # root path a browser adds ("http://localhost:3000" stays as configured).
    href = url if parsed.href in (url, f"{url}/") else parsed.href
    if parsed.special:
        host = parsed.host
        if parsed.userinfo:
            return None
        if parsed.is_ip:
            if not (host.startswith("[") or parsed.ipv4_written_as_dotted):
                return None  # a decimal, hex or shortened IPv4 address
            if not _is_loopback(host):
                return None
        elif parsed.scheme in {"http", "https"} and not _REGULAR_HOST.fullmatch(host):
            return None
        site = _site(settings.site_url)
        if (
            site is not None
            and (parsed.scheme, host) == (site.scheme, site.host)
            and (parsed.port == site.port or _is_loopback(host))
        ):
            return href
    # A glob matches the browser's URL; or the URL as written (GoTrue matches
    # that: "http://localhost:3000" against the browser's ".../"), when Python
    # reads the same host in it as the browser does.
    written = url.split("#", 1)[0]
    browser = parsed.href.split("#", 1)[0]
    same_host = not parsed.special or _rfc3986_host(url) == parsed.host
    for pattern in settings.uri_allow_list:
        glob = _glob(pattern)
        if glob.fullmatch(browser) or (same_host and glob.fullmatch(written)):
            return href
    return None


def is_redirect_valid(settings: Settings, url: str) -> bool:
    """Whether ``url`` may be redirected to (see :func:`allowed_redirect`)."""
    return allowed_redirect(settings, url) is not None


def redirect_to(settings: Settings, request: Request, body_value: str | None = None) -> str:
    """The redirect for a flow: header, query, body, then Referer; else SITE_URL.

    The first allowed candidate wins, normalized as a browser reads it.
    """
    candidates = (
        request.headers.get("redirect_to"),
        request.query_params.get("redirect_to"),
        body_value,
        request.headers.get("referer"),
    )
    for candidate in candidates:
        allowed = allowed_redirect(settings, candidate)
        if allowed is not None:
            return allowed
    return settings.site_url


def _external_url(settings: Settings, request: Request) -> str:
    hosts = settings.mailer_external_hosts
    if hosts:
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        if host in hosts:
            scheme = "http" if host.split(":")[0] == "localhost" else "https"
            return f"{scheme}://{host}"
    return settings.api_external_url


def action_link(
    settings: Settings, request: Request, path: str, token: str, kind: str, redirect: str
) -> str:
    """The /verify link for a mail: external URL + path, token, type and redirect."""
    base = _external_url(settings, request)
    if not base.endswith("/"):
        base += "/"
    url = urljoin(base, path)  # RFC 3986: an absolute path replaces the base's path
    escaped = quote(redirect, safe="") if any(c in redirect for c in "&=#") else redirect
    return f"{url}?token={token}&type={kind}&redirect_to={escaped}"
