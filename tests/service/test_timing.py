"""Response-time matching: "nothing sent" answers wait as long as "sent" ones did."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from apitask_auth.timing import ResponseTimeMiddleware, mark_nothing_sent, mark_sent

from ._accounts import signed_in
from .conftest import email

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from starlette.types import Receive, Scope, Send

    from .conftest import Service


class FakeTime:
    """A clock the test moves, and a sleep that moves it (a little late, as real ones are)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)
        self.now += delay + 0.01


def _app(fake: FakeTime) -> FastAPI:
    app = FastAPI()

    @app.get("/flow")
    async def flow(request: Request, sent: bool = False, cost: float = 0.1) -> JSONResponse:
        fake.now += cost
        if sent:
            mark_sent(request)
        else:
            mark_nothing_sent(request)
        return JSONResponse({})

    @app.get("/unmarked")
    async def unmarked() -> JSONResponse:
        fake.now += 0.3
        return JSONResponse({})

    return app


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_nothing_sent_waits_for_a_sent_duration() -> None:
    """Learned per path from "sent" answers; "nothing sent" waits for a drawn duration,
    aiming earlier by how late sleeps have woken."""
    fake = FakeTime()
    middleware = ResponseTimeMiddleware(_app(fake), clock=fake.clock, sleep=fake.sleep)
    async with _client(middleware) as http:
        await http.get("/flow")
        assert fake.slept == []  # nothing learned on this path yet
        await http.get("/flow", params={"sent": "true", "cost": "0.5"})
        assert list(middleware.samples["/flow"]) == pytest.approx([0.5])
        await http.get("/unmarked")
        assert "/unmarked" not in middleware.samples
        await http.get("/flow")
        assert fake.slept == pytest.approx([0.4])
        await http.get("/flow")
    assert fake.slept[1] == pytest.approx(0.4 - 0.01 / 8)
    assert middleware.lateness > 0


async def test_disabled_and_non_http_pass_through() -> None:
    """Off, nothing is delayed or learned; lifespan messages are not touched."""
    fake = FakeTime()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    off = ResponseTimeMiddleware(app, enabled=False)
    await off({"type": "http", "path": "/"}, _never, _never)
    on = ResponseTimeMiddleware(app, clock=fake.clock, sleep=fake.sleep)
    await on({"type": "lifespan"}, _never, _never)
    assert seen == ["http", "lifespan"]
    assert on.samples == {} and off.samples == {}


async def _never(*_: Any) -> Any:  # pragma: no cover - the apps above never call it
    raise AssertionError("not called")


async def test_recover_and_resend_mark_their_outcomes(make_service: Callable[..., Any]) -> None:
    """/recover and /resend: mail sent is a sample; an unknown address waits; errors neither."""
    svc: Service = await make_service(security_match_response_times=False, smtp_max_frequency="1us")
    fake = FakeTime()

    def longest(samples: deque[float]) -> float:
        return max(samples) + 1.0

    middleware = ResponseTimeMiddleware(svc.app, sleep=fake.sleep, choose=longest)
    address, _ = await signed_in(svc)
    async with _client(middleware) as http:
        assert (await http.post("/recover", json={"email": email()})).status_code == 200
        assert fake.slept == []  # no sample yet
        assert (await http.post("/recover", json={"email": address})).status_code == 200
        assert len(middleware.samples["/recover"]) == 1
        invalid = await http.post("/recover", json={"email": "not an address"})
        assert invalid.status_code == 400
        assert len(middleware.samples["/recover"]) == 1
        assert (await http.post("/recover", json={"email": email()})).status_code == 200
        assert len(fake.slept) == 1
        nothing = await http.post("/resend", json={"type": "signup", "email": address})
        assert nothing.json() == {}
        assert len(fake.slept) == 1  # /resend has learned nothing yet
        pending = email()
        await http.post("/signup", json={"email": pending, "password": "secret-password"})
        sent = await http.post("/resend", json={"type": "signup", "email": pending})
        assert sent.json() == {}
        assert len(middleware.samples["/resend"]) == 1
        await http.post("/resend", json={"type": "signup", "email": email()})
        assert len(fake.slept) == 2


async def test_signup_marks_the_mailed_and_the_fake_user_answers(
    make_service: Callable[..., Any],
) -> None:
    """/signup: a confirmation mail is a sample; a confirmed address's fake user waits."""
    svc: Service = await make_service(security_match_response_times=False)
    fake = FakeTime()
    middleware = ResponseTimeMiddleware(svc.app, sleep=fake.sleep, choose=lambda s: max(s) + 1)
    confirmed, _ = await signed_in(svc)
    async with _client(middleware) as http:
        body = {"email": email(), "password": "secret-password"}
        assert (await http.post("/signup", json=body)).status_code == 200
        assert len(middleware.samples["/signup"]) == 1
        body = {"email": confirmed, "password": "secret-password"}
        assert (await http.post("/signup", json=body)).status_code == 200
        assert len(fake.slept) == 1
