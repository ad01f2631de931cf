"""Response-time matching: every answer that could have sent mail waits for one deadline."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from apitask_auth.config import ConfigError, load_settings
from apitask_auth.http.timing import (
    NOTHING_SENT,
    SENT,
    Deadlines,
    ResponseTimeMiddleware,
    _wake,
    mark_outcome,
    sleep_until,
)
from apitask_auth.routes.recovery import SIGNED_UP

from ._accounts import signed_in
from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from .conftest import Service


class FakeTime:
    """A clock the test moves, and an absolute wait that moves it to the deadline."""

    def __init__(self) -> None:
        self.now = 100.0
        self.deadlines: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep_until(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        self.now = max(self.now, deadline)


def _app(fake: FakeTime) -> FastAPI:
    """``/flow`` works ``cost`` seconds of fake time and marks ``outcome``; ``/unmarked`` not."""
    app = FastAPI()

    @app.get("/flow")
    async def flow(
        request: Request, outcome: str = NOTHING_SENT, cost: float = 0.0
    ) -> JSONResponse:
        fake.now += cost
        mark_outcome(request, outcome)
        return JSONResponse({})

    @app.get("/unmarked")
    async def unmarked() -> JSONResponse:
        fake.now += 0.3
        return JSONResponse({})

    return app


def _client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def _timed(fake: FakeTime, http: httpx.AsyncClient, url: str, **params: Any) -> float:
    """Fake seconds from sending ``url`` to its answer."""
    start = fake.now
    response = await http.get(url, params=params)
    assert response.status_code == 200
    return fake.now - start


def test_deadlines_take_the_highest_quantile_of_the_recent_work_times() -> None:
    """Per path: the floor, or the largest of each outcome's quantile over its last values."""
    deadlines = Deadlines(floor=0.5, quantile=0.5, window=4)
    assert deadlines.wait("/p") == 0.5  # nothing learned: the floor
    for work in (1.0, 4.0, 2.0, 3.0):
        deadlines.learn("/p", SENT, work)
    assert deadlines.wait("/p") == 2.0  # nearest rank: the 2nd of 4
    deadlines.learn("/p", SENT, 5.0)  # the oldest (1.0) leaves
    assert deadlines.wait("/p") == 3.0
    assert deadlines.wait("/other") == 0.5
    deadlines.learn("/p", NOTHING_SENT, 7.0)  # another outcome, slower: it sets the wait
    assert deadlines.wait("/p") == 7.0
    assert Deadlines(floor=0.0, quantile=1.0).wait("/p") == 0.0


def test_a_rare_slow_outcome_is_not_outvoted_by_many_fast_ones() -> None:
    """One sign-up among 255 magic links: every answer still waits as long as it took."""
    deadlines = Deadlines(floor=0.0)
    for _ in range(255):
        deadlines.learn("/otp", SENT, 0.005)
    deadlines.learn("/otp", SIGNED_UP, 0.2)
    assert deadlines.wait("/otp") == 0.2


@pytest.mark.parametrize(("quantile", "window"), [(0.0, 8), (1.5, 8), (0.9, 0)])
def test_deadlines_refuse_a_quantile_or_window_that_means_nothing(
    quantile: float, window: int
) -> None:
    with pytest.raises(ValueError, match=r"quantile|window"):
        Deadlines(floor=0.0, quantile=quantile, window=window)


async def test_known_and_unknown_answer_at_the_same_deadline_from_their_start() -> None:
    """Both outcomes wait until start + D, D fixed at the start; only an overrun answers later."""
    fake = FakeTime()
    middleware = ResponseTimeMiddleware(
        _app(fake), floor=0.05, clock=fake.clock, sleep_until=fake.sleep_until
    )
    async with _client(middleware) as http:
        # Nothing learned: the floor, for both.
        assert await _timed(fake, http, "/flow", outcome=NOTHING_SENT, cost=0.001) == pytest.approx(
            0.05
        )
        assert await _timed(fake, http, "/flow", outcome=SENT, cost=0.002) == pytest.approx(0.05)
        # A slow mail overruns its own deadline (fixed before it was learned) ...
        assert await _timed(fake, http, "/flow", outcome=SENT, cost=0.2) == pytest.approx(0.2)
        # ... and from then on both outcomes wait for it, however little they work.
        assert await _timed(fake, http, "/flow", outcome=NOTHING_SENT) == pytest.approx(0.2)
        assert await _timed(fake, http, "/flow", outcome=SENT, cost=0.01) == pytest.approx(0.2)
        assert await _timed(fake, http, "/flow", outcome=NOTHING_SENT) == pytest.approx(0.2)
        # Unmarked answers neither wait nor teach.
        assert await _timed(fake, http, "/unmarked") == pytest.approx(0.3)
    assert "/unmarked" not in middleware.deadlines.paths
    assert len(fake.deadlines) == 6
    learned = middleware.deadlines.paths["/flow"]
    assert sorted(learned[SENT].recent) == pytest.approx([0.002, 0.01, 0.2])
    assert sorted(learned[NOTHING_SENT].recent) == pytest.approx([0.0, 0.0, 0.001])


async def test_disabled_and_non_http_pass_through() -> None:
    """Off, nothing is delayed or learned; lifespan messages are not touched."""
    fake = FakeTime()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    off = ResponseTimeMiddleware(app, enabled=False)
    await off({"type": "http", "path": "/"}, _never, _never)
    on = ResponseTimeMiddleware(app, clock=fake.clock, sleep_until=fake.sleep_until)
    await on({"type": "lifespan"}, _never, _never)
    assert seen == ["http", "lifespan"]
    assert on.deadlines.paths == {} and off.deadlines.paths == {}
    assert fake.deadlines == []


async def _never(*_: Any) -> Any:  # pragma: no cover - the apps above never call it
    raise AssertionError("not called")


async def test_sleep_until_wakes_at_the_deadline_on_the_loop_clock() -> None:
    """Not before the deadline (a passed one returns at once); cancelled, it leaves no timer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.02
    await sleep_until(deadline)
    assert loop.time() >= deadline - time.get_clock_info("monotonic").resolution
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    await sleep_until(loop.time() - 1)
    waiter = asyncio.create_task(sleep_until(loop.time() + 60))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len([h for h in loop._scheduled if not h.cancelled()]) <= before  # type: ignore[attr-defined]
    # The timer and a cancellation can land in one turn of the loop: the timer then
    # finds the waiter already cancelled and leaves it be.
    cancelled = loop.create_future()
    cancelled.cancel()
    _wake(cancelled)
    assert cancelled.cancelled()


def _matching(app: Any) -> ResponseTimeMiddleware:
    """The service's own matching middleware, found in its built stack."""
    layer = app.middleware_stack or app.build_middleware_stack()
    while not isinstance(layer, ResponseTimeMiddleware):
        layer = layer.app
    return layer


async def test_service_answers_known_and_unknown_addresses_at_one_deadline(
    make_service: Callable[..., Any],
) -> None:
    """End to end, with matching on as deployed and a floor of 400 ms: /recover for a real
    and an unknown address, and /resend with and without a pending sign-up, each answer
    no earlier than the deadline it was given and within half of it after."""
    floor = 0.4
    svc: Service = await make_service(
        security_response_time_floor=f"{int(floor * 1000)}ms", smtp_max_frequency="1us"
    )
    address, _ = await signed_in(svc)
    pending = email()
    await svc.http.post("/signup", json={"email": pending, "password": "secret-password"})
    await svc.http.get("/health")  # builds the middleware stack
    matching = _matching(svc.app)
    cases = [
        ("/recover", {"email": address}),
        ("/recover", {"email": email()}),
        ("/resend", {"type": "signup", "email": pending}),
        ("/resend", {"type": "signup", "email": email()}),
    ]
    for path, body in cases:
        deadline = matching.deadlines.wait(path)
        assert deadline >= floor
        start = time.perf_counter()
        response = await svc.http.post(path, json=body)
        elapsed = time.perf_counter() - start
        assert response.json() == {}
        assert deadline <= elapsed <= deadline * 1.5, (path, body, deadline, elapsed)
    learned = {path: sorted(outcomes) for path, outcomes in matching.deadlines.paths.items()}
    assert learned["/recover"] == [NOTHING_SENT, SENT]
    assert learned["/resend"] == [NOTHING_SENT, SENT]


async def test_real_addresses_wait_for_the_floor_too(make_service: Callable[..., Any]) -> None:
    """Matching as deployed: an answer that sent mail waits for the deadline as well, so it
    cannot be told from one that did not (/recover, /otp and /magiclink for a real address)."""
    svc: Service = await make_service(
        security_response_time_floor="300ms", smtp_max_frequency="1us"
    )
    address, _ = await signed_in(svc)
    for path in ("/recover", "/otp", "/magiclink"):
        start = time.perf_counter()
        response = await svc.http.post(path, json={"email": address})
        assert response.status_code == 200, response.text
        assert time.perf_counter() - start >= 0.3, path


async def test_each_endpoint_marks_its_outcomes(make_service: Callable[..., Any]) -> None:
    """Which outcome each mail endpoint teaches: /otp and /magiclink a sent magic link or a
    sign-up (a password hashed); /signup a confirmation or a confirmed address's fake user;
    errors nothing."""
    svc: Service = await make_service(security_match_response_times=False, smtp_max_frequency="1us")
    fake = FakeTime()
    middleware = ResponseTimeMiddleware(svc.app, sleep_until=fake.sleep_until)
    address, _ = await signed_in(svc)
    async with _client(middleware) as http:
        for path in ("/otp", "/magiclink"):
            assert (await http.post(path, json={"email": address})).status_code == 200
            assert (await http.post(path, json={"email": email()})).status_code == 200
        refused = await http.post("/otp", json={"email": email(), "create_user": False})
        assert refused.status_code == 422  # GoTrue's own answer: not ours to hide
        assert (await http.post("/recover", json={"email": "not an address"})).status_code == 400
        body = {"email": email(), "password": "secret-password"}
        assert (await http.post("/signup", json=body)).status_code == 200
        body = {"email": address, "password": "secret-password"}
        assert (await http.post("/signup", json=body)).status_code == 200
    learned = {
        path: {outcome: len(w.recent) for outcome, w in outcomes.items()}
        for path, outcomes in middleware.deadlines.paths.items()
    }
    assert learned == {
        "/otp": {SENT: 1, SIGNED_UP: 1},
        "/magiclink": {SENT: 1, SIGNED_UP: 1},
        "/signup": {SENT: 1, NOTHING_SENT: 1},
    }
    assert len(fake.deadlines) == 6


async def test_magic_link_sign_up_under_autoconfirm_is_a_sign_up(
    make_service: Callable[..., Any],
) -> None:
    """With autoconfirm an unknown address is signed up and then sent a magic link: the
    slower outcome, so it is learned as a sign-up."""
    svc: Service = await make_service(
        security_match_response_times=False, mailer_autoconfirm=True, smtp_max_frequency="1us"
    )
    fake = FakeTime()
    middleware = ResponseTimeMiddleware(svc.app, sleep_until=fake.sleep_until)
    async with _client(middleware) as http:
        assert (await http.post("/magiclink", json={"email": email()})).status_code == 200
    assert list(middleware.deadlines.paths["/magiclink"]) == [SIGNED_UP]


@pytest.mark.parametrize("value", ["-1ms", "11s", "soon"])
def test_floor_is_checked_at_start(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """GOTRUE_SECURITY_RESPONSE_TIME_FLOOR: a Go duration from 0s to 10s, named when wrong."""
    monkeypatch.setenv("GOTRUE_SITE_URL", "http://localhost:3000")
    monkeypatch.setenv("API_EXTERNAL_URL", "http://localhost:9999")
    monkeypatch.setenv("GOTRUE_JWT_SECRET", "s" * 32)
    monkeypatch.setenv("GOTRUE_SECURITY_RESPONSE_TIME_FLOOR", value)
    with pytest.raises(ConfigError, match=r"^GOTRUE_SECURITY_RESPONSE_TIME_FLOOR: "):
        load_settings(env_file=None)
    monkeypatch.setenv("GOTRUE_SECURITY_RESPONSE_TIME_FLOOR", "250ms")
    assert load_settings(env_file=None).security_response_time_floor.total_seconds() == 0.25
