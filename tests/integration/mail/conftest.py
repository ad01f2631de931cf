"""Fixtures for the mail integration tests: aiosmtpd servers and trustme certificates.

See smtp_server.py for the scripted server itself.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from .smtp_server import MailServer, start_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway CA; its server certificate covers 127.0.0.1 and localhost."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(tls_ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls_ca.configure_trust(context)
    return context


@pytest.fixture(params=[None, "require"], ids=["plain", "pipelined"])
async def mail_server(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Awaitable[MailServer]]]:
    """Start aiosmtpd servers: ``await mail_server(ssl=ctx, **smtp_options)``.

    Every test runs twice: against aiosmtpd as it is (no PIPELINING), and
    against one that offers PIPELINING and answers MAIL and RCPT only with
    DATA (so the client must pipeline): the error classes and the retry
    rules are the same either way.
    """
    servers: list[MailServer] = []

    async def start(ssl: ssl.SSLContext | None = None, **options: Any) -> MailServer:
        options.setdefault("pipelining", request.param)
        servers.append(await start_server(ssl, **options))
        return servers[-1]

    yield start
    for server in servers:
        await server.close()
