"""Redirect URLs and the external URL of links (§1.6, §2 "Links")."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

if TYPE_CHECKING:
    from fastapi import Request

    from .config import Settings

__all__ = ["action_link", "is_redirect_valid", "redirect_to"]


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
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_redirect_valid(settings: Settings, url: str) -> bool:
    """Whether ``url`` may be redirected to: SITE_URL's host, or the allow list."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
        site = urlsplit(settings.site_url)
        port, site_port = parts.port, site.port
    except ValueError:
        return False
    host = parts.hostname or ""
    if host.isdigit():  # a decimal IP such as http://2130706433/
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not _is_loopback(host):
            return False
    same_site = parts.scheme == site.scheme and host == site.hostname and bool(host)
    if same_site and (_is_loopback(host) or port == site_port):
        return True
    bare = url.split("#", 1)[0]
    return any(_glob(pattern).fullmatch(bare) for pattern in settings.uri_allow_list)


def redirect_to(settings: Settings, request: Request, body_value: str | None = None) -> str:
    """The redirect for a flow: header, query, body, then Referer; else SITE_URL."""
    candidates = (
        request.headers.get("redirect_to"),
        request.query_params.get("redirect_to"),
        body_value,
        request.headers.get("referer"),
    )
    for candidate in candidates:
        if candidate and is_redirect_valid(settings, candidate):
            return candidate
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
