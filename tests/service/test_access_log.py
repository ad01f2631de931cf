"""The access log's request targets lose the values of secret query parameters."""

from __future__ import annotations

import logging

import pytest

from apitask_auth.http.access_log import AccessLogRedaction, redact_access_log, redact_query


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/health", "/health"),
        ("/verify?type=signup&token=123456", "/verify?type=signup&token=REDACTED"),
        (
            "/verify?token_hash=abc&redirect_to=https://a.example/x",
            "/verify?token_hash=REDACTED&redirect_to=https://a.example/x",
        ),
        (
            "/token?grant_type=pkce&code=abc&CODE_VERIFIER=x",
            "/token?grant_type=pkce&code=REDACTED&CODE_VERIFIER=REDACTED",
        ),
        (
            "/x?refresh_token=r&access_token=a&nonce=n",
            "/x?refresh_token=REDACTED&access_token=REDACTED&nonce=REDACTED",
        ),
        ("/x?to%6Ben=1&tok+en=2", "/x?to%6Ben=REDACTED&tok+en=2"),  # names are decoded
        ("/x?email=ann@example.com&phone=1", "/x?email=REDACTED&phone=REDACTED"),
        ("/x?token&page=2&=token", "/x?token&page=2&=token"),  # no value, nothing to hide
        ("/x?", "/x?"),
    ],
)
def test_redact_query(target: str, logged: str) -> None:
    assert redact_query(target) == logged


def test_the_filter_rewrites_uvicorns_access_record_only() -> None:
    access = logging.makeLogRecord(
        {
            "msg": '%s - "%s %s HTTP/%s" %d',
            "args": ("127.0.0.1:5", "GET", "/verify?token=1", "1.1", 303),
        }
    )
    other = logging.makeLogRecord({"msg": "%s", "args": ("/verify?token=1",)})
    redaction = AccessLogRedaction()
    assert redaction.filter(access) and redaction.filter(other)
    assert access.getMessage() == '127.0.0.1:5 - "GET /verify?token=REDACTED HTTP/1.1" 303'
    assert other.getMessage() == "/verify?token=1"


def test_redact_access_log_installs_one_filter() -> None:
    logger = logging.getLogger("test.access")
    redact_access_log(logger)
    redact_access_log(logger)
    assert [type(f) for f in logger.filters] == [AccessLogRedaction]
    logger.removeFilter(logger.filters[0])
