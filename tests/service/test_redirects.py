"""Redirect validation against SITE_URL and the allow list (§1.6)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from apitask_auth.config import load_settings
from apitask_auth.http.browser_url import parse_browser_url
from apitask_auth.http.redirects import allowed_redirect, is_redirect_valid

from ._accounts import PASSWORD
from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

SETTINGS = load_settings(
    env_file=None,
    site_url="https://app.example.com",
    api_external_url="https://auth.example.com",
    jwt_secret="s" * 32,
    uri_allow_list=["https://*.example.org/callback", "https://docs.example.net/**"],
)
LOCAL = load_settings(
    env_file=None,
    site_url="http://localhost:9998",
    api_external_url="http://localhost:9999",
    jwt_secret="s" * 32,
)


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("https://app.example.com/welcome", True),
        ("https://app.example.com:8443/welcome", False),
        ("http://app.example.com/welcome", False),
        ("https://evil.example.com/", False),
        ("https://a.example.org/callback", True),
        ("https://a.b.example.org/callback", False),
        ("https://docs.example.net/a/b/c#frag", True),
        ("http://2130706433/", False),
        ("http://10.0.0.1/", False),
        ("", False),
        ("http://[::1", False),
    ],
)
def test_redirects(url: str, valid: bool) -> None:
    """Same scheme, host and port as SITE_URL, or an allow-list glob."""
    assert is_redirect_valid(SETTINGS, url) is valid


@pytest.mark.parametrize(
    ("url", "valid"),
    [
        ("http://localhost:9999/welcome", True),
        ("http://localhost/x", True),
        ("http://127.0.0.1:3000/", False),
    ],
)
def test_loopback_any_port(url: str, valid: bool) -> None:
    """On a loopback SITE_URL any port is allowed (the Python client's tests rely on it)."""
    assert is_redirect_valid(LOCAL, url) is valid


SITE = "https://app.example.com"
ALLOWED_HOSTS = {"app.example.com", "a.example.org", "docs.example.net"}


def chosen(url: str) -> str:
    """The redirect a flow uses for ``url``: the allowed URL, else SITE_URL."""
    return allowed_redirect(SETTINGS, url) or SETTINGS.site_url


def destination(url: str) -> str:
    """The host a browser opens for ``url``."""
    parsed = parse_browser_url(url)
    assert parsed is not None
    return parsed.host


# Each probe: the input, and the redirect expected (SITE: we fell back to SITE_URL).
PROBES = [
    # a backslash ends the host for a browser; Python read app.example.com
    ("https://evil.com\\@app.example.com/", SITE),
    ("https://evil.com\\.example.org/callback", SITE),
    ("https://docs.example.net\\@evil.com/", "https://docs.example.net/@evil.com/"),
    # tabs, line breaks, spaces, control characters anywhere: refused, as GoTrue
    ("https://app.example.com/\r\nInjected: header", SITE),
    ("https://app.example.com\t.evil.com/", SITE),
    ("https://evil.com\t/", SITE),
    ("\thttps://app.example.com/", SITE),
    ("https://app.example.com/ x", SITE),
    ("https://app.example.com/\x00", SITE),
    # slashes after the scheme
    ("https:evil.com", SITE),
    ("https:/\\evil.com", SITE),
    ("https:///evil.com/", SITE),
    ("https:app.example.com/welcome", "https://app.example.com/welcome"),
    # no scheme: relative to nothing
    ("//evil.com", SITE),
    ("/\\evil.com", SITE),
    # userinfo: the host is after the last @
    ("https://app.example.com@evil.com", SITE),
    ("https://app.example.com:443@evil.com/", SITE),
    ("https://evil.com@app.example.com/", SITE),  # beyond GoTrue: credentials refused
    ("https://@app.example.com/", SITE),
    # percent-encoded hosts are decoded by the browser
    ("https://app.example.com%2F@evil.com/", SITE),
    ("https://app.example.com%40evil.com/", SITE),
    ("https://evil.com%2F%2Fapp.example.com/", SITE),
    ("https://%61pp.example.com/x", "https://app.example.com/x"),
    ("https://app%2Eexample%2Ecom/", "https://app.example.com/"),
    # IDNA and case: where the browser goes is what is checked and sent
    ("HTTPS://APP.EXAMPLE.COM/Welcome", "https://app.example.com/Welcome"),
    ("https://\uff21\uff30\uff30.example.com/", "https://app.example.com/"),
    ("https://\u0430pp.example.com/", SITE),  # Cyrillic a: xn--pp-6kc.example.com
    ("https://app\u3002example\u3002com/", "https://app.example.com/"),
    ("https://A.EXAMPLE.ORG/callback", "https://a.example.org/callback"),
    # IP addresses: dotted loopback only, as GoTrue
    ("http://2130706433/", SITE),
    ("http://0x7f.1/", SITE),
    ("http://127.1/", SITE),
    ("http://10.0.0.1/", SITE),
    # host names GoTrue finds unusual (its regularHostname), and one Python cannot read
    ("https://a_b.example.com/", SITE),
    ("https://a.example.org\\[/callback", SITE),
    # ports and paths are normalized
    ("https://app.example.com:443/a/../welcome", "https://app.example.com/welcome"),
    ("https://app.example.com:8443/", SITE),
    ("https://docs.example.net/a/%2e%2e/b#frag", "https://docs.example.net/b#frag"),
    ("https://docs.example.net/\u00fc", "https://docs.example.net/%C3%BC"),
    # unchanged where every reader agrees
    ("https://app.example.com", "https://app.example.com"),
    ("https://a.example.org/callback", "https://a.example.org/callback"),
    ("javascript:alert(1)", SITE),
    ("file:///etc/passwd", SITE),
]


@pytest.mark.parametrize(("url", "expected"), PROBES)
def test_a_browser_goes_where_the_check_looked(url: str, expected: str) -> None:
    """The redirect used is an allowed host as a browser reads it, or SITE_URL; it is the
    browser's form of the URL, never the raw input."""
    redirect = chosen(url)
    assert redirect == expected
    assert redirect == SITE or destination(redirect) in ALLOWED_HOSTS
    assert not any(char in redirect for char in "\\\t\r\n ")


def test_an_allow_list_glob_matches_the_url_as_written_when_readers_agree() -> None:
    """GoTrue matches the glob against the input: "http://localhost:3000" still matches
    the pattern written without the browser's trailing slash."""
    settings = load_settings(
        env_file=None,
        site_url="https://app.example.com",
        api_external_url="https://auth.example.com",
        jwt_secret="s" * 32,
        uri_allow_list=["http://localhost:3000", "myapp://callback", "https://*.example.org/**"],
    )
    assert allowed_redirect(settings, "http://localhost:3000") == "http://localhost:3000"
    assert allowed_redirect(settings, "MyApp://callback") == "myapp://callback"
    assert allowed_redirect(settings, "https://x.example.org/a") == "https://x.example.org/a"
    # The glob matches the input ("*" is "evil\\"); a browser opens the host "evil": refused.
    assert allowed_redirect(settings, "https://evil\\.example.org/") is None
    assert allowed_redirect(settings, None) is None


SERVICE_SITE = "http://localhost:3000"  # the service fixture's SITE_URL


async def _service(make_service: Callable[..., Any]) -> Service:
    svc: Service = await make_service(uri_allow_list=["https://app.example.com/**"])
    return svc


@pytest.mark.parametrize(
    ("sent", "used"),
    [
        ("https://evil.com\\@app.example.com/", SERVICE_SITE),
        ("http://evil.com\\@localhost:3000/", SERVICE_SITE),  # the probe, on SITE_URL
        ("https://app.example.com/x\r\nInjected: yes", SERVICE_SITE),
        ("HTTPS://APP.EXAMPLE.COM/welcome", "https://app.example.com/welcome"),
    ],
)
async def test_generate_link_carries_the_normalized_redirect(
    make_service: Callable[..., Any], sent: str, used: str
) -> None:
    svc = await _service(make_service)
    response = await svc.http.post(
        "/admin/generate_link",
        json={"type": "magiclink", "email": email(), "redirect_to": sent},
        headers=svc.admin_headers(),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["redirect_to"] == used
    assert body["action_link"].endswith(f"&redirect_to={used}")


async def test_the_mail_carries_the_normalized_redirect(make_service: Callable[..., Any]) -> None:
    """A redirect with a line break adds no line to the mail; a backslash trick falls back."""
    svc = await _service(make_service)
    for sent in (
        "https://app.example.com/x\r\nInjected: yes",
        "http://localhost:3000/x\r\nInjected: yes",
        "http://evil.com\\@localhost:3000/",
    ):
        address = email()
        response = await svc.http.post(
            "/signup",
            params={"redirect_to": sent},
            json={"email": address, "password": PASSWORD},
        )
        assert response.status_code == 200
        (mail,) = [mail for mail in svc.sent if mail.to == address]
        assert "Injected" not in mail.text
        assert "evil.com" not in mail.text + mail.html
        assert svc.link(address).endswith(f"redirect_to={SERVICE_SITE}")
    address = email()
    await svc.http.post(
        "/signup",
        headers={"redirect_to": "HTTPS://APP.example.com:443/a/../welcome"},
        json={"email": address, "password": PASSWORD},
    )
    assert svc.link(address).endswith("redirect_to=https://app.example.com/welcome")
