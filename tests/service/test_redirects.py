"""Redirect validation against SITE_URL and the allow list (§1.6)."""

from __future__ import annotations

import pytest

from apitask_auth.config import load_settings
from apitask_auth.redirects import is_redirect_valid

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
