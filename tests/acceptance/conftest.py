"""A real ``apitask-auth serve --dev`` process per configuration, for the real client.

Each server gets a free port, its own SQLite file in a temp directory, and its
configuration from the environment only; it is ready when uvicorn says so
(see _uvicorn.py). Mail goes to the dev inbox inside the server and is read
back from its JSON API, long-polling (``wait=``) so that modes that send after
the response (pool, outbox) need no sleeps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest

from ._service import JWT_SECRET, SERVE_DEV, dev_environment
from ._uvicorn import free_port
from ._uvicorn import server as run_server

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

MAIL_WAIT = 20.0
DELIVERY_MODES = ["inline", "request", "pool", "outbox"]


@dataclass(frozen=True)
class Server:
    """A running service: its URL, its mode, and a way to read the mail it sent."""

    url: str
    service_key: str
    mode: str = "inline"

    def mail_to(
        self, address: str, *, count: int = 1, wait: float = MAIL_WAIT
    ) -> list[dict[str, Any]]:
        """The dev inbox's messages to ``address``, newest first; waits up to ``wait``
        seconds until there are ``count`` (0: answer at once)."""
        response = httpx.get(
            f"{self.url}/_dev/inbox/messages",
            params={"to": address, "wait": wait, "count": count},
            timeout=wait + 10,
        )
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    def last_mail_to(self, address: str, *, count: int = 1) -> dict[str, Any]:
        """The newest message to ``address``, once ``count`` have arrived (the
        modes that send after the response need to be told which one is new)."""
        matching = self.mail_to(address, count=count)
        assert len(matching) >= count, f"{len(matching)} mail(s) to {address}, not {count}"
        return matching[0]

    def otp_for(self, address: str, *, count: int = 1) -> str:
        """The code in the newest mail to ``address`` (the ``count``-th one)."""
        text = self.last_mail_to(address, count=count)["text"]
        # "Or enter this code: 123456", or the re-authentication mail's "...: 123456"
        found = re.search(r": (\d{6,10})\s*$", text, re.MULTILINE)
        assert found is not None, text
        return found.group(1)


def start_server(tmp: Path, mode: str = "inline", **env: str) -> Iterator[Server]:
    """Run ``apitask-auth serve --dev`` with ``env`` until the generator is closed
    (its SQLite file: ``tmp / "auth.db"``)."""
    port = free_port()
    environment = (
        dev_environment(port)
        | {"GOTRUE_MAILER_DELIVERY": mode, "DATABASE_URL": f"sqlite:///{tmp / 'auth.db'}"}
        | env
    )
    with run_server(SERVE_DEV, env=environment, cwd=tmp) as url:
        service_key = jwt.encode({"role": "service_role"}, JWT_SECRET, algorithm="HS256")
        yield Server(url, service_key, mode)


@pytest.fixture(scope="module", params=DELIVERY_MODES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with autoconfirm off, in each delivery mode."""
    tmp = tmp_path_factory.mktemp(f"auth-{request.param}")
    yield from start_server(tmp, request.param)


@pytest.fixture(scope="module")
def autoconfirm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with autoconfirm on."""
    yield from start_server(
        tmp_path_factory.mktemp("auth-autoconfirm"), GOTRUE_MAILER_AUTOCONFIRM="true"
    )
