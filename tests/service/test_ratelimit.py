"""Rate limits (§1.7): the global e-mail allowance in the database, per-user intervals,
per-IP request limits, and the authorized-addresses list."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event

from apitask_auth.config import EmailRateLimit
from apitask_auth.errors import APIError
from apitask_auth.http.ratelimit import (
    TokenBucket,
    _allowance_engine,
    client_key,
    take_email_allowance,
)

from ._accounts import PASSWORD, mails_to, signed_in
from .conftest import NEW_FORMAT, email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service


async def _known_users(svc: Service, count: int) -> list[str]:
    """Confirmed users made by the admin API (no mail, so no allowance spent)."""
    addresses = []
    for _ in range(count):
        address = email()
        created = await svc.http.post(
            "/admin/users",
            json={"email": address, "password": PASSWORD, "email_confirm": True},
            headers=svc.admin_headers(),
        )
        assert created.status_code == 200
        addresses.append(address)
    return addresses


async def test_fixed_window_allows_n_sends_per_hour(make_service: Callable[..., Any]) -> None:
    """With N=2 the third send in the hour is 429 over_email_send_rate_limit."""
    svc: Service = await make_service(rate_limit_email_sent="2")
    first, second, third = await _known_users(svc, 3)
    for address in (first, second):
        assert (await svc.http.post("/recover", json={"email": address})).status_code == 200
    refused = await svc.http.post("/recover", json={"email": third}, headers=NEW_FORMAT)
    assert refused.status_code == 429
    assert refused.json() == {
        "code": "over_email_send_rate_limit",
        "message": "email rate limit exceeded",
    }
    assert mails_to(svc, third) == []
    # Unknown addresses send nothing, so they never meet the limit (as in GoTrue).
    assert (await svc.http.post("/recover", json={"email": email()})).status_code == 200


async def test_fixed_window_resets_with_the_next_hour(make_service: Callable[..., Any]) -> None:
    """The allowance is per whole hour: spent now, available again an hour later."""
    svc: Service = await make_service(rate_limit_email_sent="1")
    engine = svc.app.state.service.engine
    start = (time.time() // 3600) * 3600 + 10
    async with engine.begin() as conn:
        await take_email_allowance(conn, svc.settings, at=start)
    with pytest.raises(APIError, match="email rate limit exceeded"):
        async with engine.begin() as conn:
            await take_email_allowance(conn, svc.settings, at=start + 60)
    async with engine.begin() as conn:
        await take_email_allowance(conn, svc.settings, at=start + 3600)


async def test_token_bucket_refills_one_per_duration(make_service: Callable[..., Any]) -> None:
    """N/duration: a burst of N, then one more per duration."""
    svc: Service = await make_service(rate_limit_email_sent="2/10m")
    assert svc.settings.rate_limit_email_sent == EmailRateLimit(
        2, EmailRateLimit.parse("1/10m").every
    )
    engine = svc.app.state.service.engine
    start = time.time()
    outcomes = []
    for offset in (0, 1, 2, 601, 602, 1800):
        async with engine.begin() as conn:
            try:
                await take_email_allowance(conn, svc.settings, at=start + offset)
            except APIError as error:
                assert error.status == 429
                outcomes.append(False)
            else:
                outcomes.append(True)
    assert outcomes == [True, True, False, True, False, True]


async def test_zero_refuses_every_send_even_under_autoconfirm(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_RATE_LIMIT_EMAIL_SENT=0 blocks mail; otherwise autoconfirm skips the limit."""
    blocked: Service = await make_service(rate_limit_email_sent="0", mailer_autoconfirm=True)
    (address,) = await _known_users(blocked, 1)
    refused = await blocked.http.post("/otp", json={"email": address})
    assert (refused.status_code, refused.json()["error_code"]) == (
        429,
        "over_email_send_rate_limit",
    )
    skipped: Service = await make_service(rate_limit_email_sent="1", mailer_autoconfirm=True)
    for address in await _known_users(skipped, 3):
        assert (await skipped.http.post("/otp", json={"email": address})).status_code == 200


async def test_allowance_is_shared_by_processes_on_one_database(
    make_service: Callable[..., Any],
) -> None:
    """Two apps on the same database draw from one allowance (GoTrue keeps one per process)."""
    first: Service = await make_service(rate_limit_email_sent="2")
    second: Service = await make_service(rate_limit_email_sent="2")
    a, b, c = await _known_users(first, 3)
    assert (await first.http.post("/recover", json={"email": a})).status_code == 200
    assert (await second.http.post("/recover", json={"email": b})).status_code == 200
    assert (await first.http.post("/recover", json={"email": c})).status_code == 429
    assert (await second.http.post("/recover", json={"email": c})).status_code == 429


async def test_concurrent_sends_never_exceed_the_allowance(
    make_service: Callable[..., Any],
) -> None:
    """Thirty concurrent recoveries against an allowance of twelve: exactly twelve mails.

    More flows than the connection pool holds (15) run at once: taking the
    allowance must not wait on the pool the flows are holding.
    """
    svc: Service = await make_service(rate_limit_email_sent="12")
    addresses = await _known_users(svc, 30)
    responses = await asyncio.gather(
        *(svc.http.post("/recover", json={"email": address}) for address in addresses)
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 12 + [429] * 18
    assert len([m for m in svc.sent if m.to in addresses]) == 12


async def test_email_change_takes_one_unit_for_two_mails(make_service: Callable[..., Any]) -> None:
    """Secure e-mail change sends two mails in one send, as GoTrue counts it."""
    svc: Service = await make_service(rate_limit_email_sent="2")
    _, session = await signed_in(svc)  # one unit: the sign-up confirmation
    changed = await svc.http.put(
        "/user",
        json={"email": email()},
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert changed.status_code == 200
    (other,) = await _known_users(svc, 1)
    assert (await svc.http.post("/recover", json={"email": other})).status_code == 429


async def test_authorized_addresses(make_service: Callable[..., Any]) -> None:
    """With a list, mail goes only to listed addresses (a +label is ignored)."""
    svc: Service = await make_service(
        external_email_authorized_addresses="team@example.com,Lead@example.com"
    )
    ok = await svc.http.post(
        "/signup", json={"email": "team+tag@example.com", "password": PASSWORD}
    )
    assert ok.status_code == 200
    also = await svc.http.post("/signup", json={"email": "lead@example.com", "password": PASSWORD})
    assert also.status_code == 200
    refused = await svc.http.post("/signup", json={"email": email(), "password": PASSWORD})
    assert refused.status_code == 400
    assert refused.json()["error_code"] == "email_address_not_authorized"
    assert refused.json()["msg"].endswith('" cannot be used as it is not authorized')


async def test_per_ip_limit_keyed_by_the_configured_header(
    make_service: Callable[..., Any],
) -> None:
    """A burst of 30 per address in the header; then 429; other addresses are unaffected."""
    # One token back per 5 minutes: a slow machine cannot refill the burst mid-test.
    svc: Service = await make_service(rate_limit_header="X-Real-IP", rate_limit_otp=1)
    limited = {"X-Real-IP": "203.0.113.7, 10.0.0.1"}
    for _ in range(30):
        response = await svc.http.post("/recover", json={"email": email()}, headers=limited)
        assert response.status_code == 200
    refused = await svc.http.post("/recover", json={"email": email()}, headers=limited)
    assert refused.status_code == 429
    assert refused.json()["error_code"] == "over_request_rate_limit"
    assert refused.json()["msg"] == "Request rate limit reached"
    other = await svc.http.post(
        "/recover", json={"email": email()}, headers={"X-Real-IP": "203.0.113.8"}
    )
    assert other.status_code == 200
    anonymous = await svc.http.post("/recover", json={"email": email()})
    assert anonymous.status_code == 200
    unlimited_route = await svc.http.get("/health", headers=limited)
    assert unlimited_route.status_code == 200


async def test_rotating_first_forwarded_values_are_limited_behind_one_trusted_proxy(
    make_service: Callable[..., Any],
) -> None:
    """GOTRUE_RATE_LIMIT_TRUSTED_PROXIES=1: the key is the address the proxy appended to
    X-Forwarded-For; what the client wrote before it changes nothing."""
    svc: Service = await make_service(
        rate_limit_header="X-Forwarded-For", rate_limit_trusted_proxies=1, rate_limit_otp=1
    )
    statuses = []
    for n in range(40):
        # The client sends "X-Forwarded-For: 198.51.100.<n>"; its proxy appends the
        # address it saw connect.
        forwarded = {"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.7"}
        response = await svc.http.post("/recover", json={"email": email()}, headers=forwarded)
        statuses.append(response.status_code)
    assert statuses == [200] * 30 + [429] * 10
    other_client = {"X-Forwarded-For": "198.51.100.1, 203.0.113.8"}
    response = await svc.http.post("/recover", json={"email": email()}, headers=other_client)
    assert response.status_code == 200


async def test_without_trusted_proxies_the_whole_header_is_the_key(
    make_service: Callable[..., Any],
) -> None:
    """The default (0) is GoTrue's: the header's value as a whole, so a client that can
    write part of it gets a fresh key each time (documented; set the proxy count)."""
    svc: Service = await make_service(rate_limit_header="X-Forwarded-For")
    for n in range(35):
        forwarded = {"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.7"}
        response = await svc.http.post("/recover", json={"email": email()}, headers=forwarded)
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("values", "trusted", "key"),
    [
        ([], 0, ""),
        ([], 2, ""),
        (["203.0.113.7"], 0, "203.0.113.7"),
        ([" 1.1.1.1, 203.0.113.7 "], 0, "1.1.1.1, 203.0.113.7"),  # GoTrue: the whole value
        (["1.1.1.1", "2.2.2.2"], 0, "1.1.1.1"),  # GoTrue reads the first line only
        (["1.1.1.1, 203.0.113.7"], 1, "203.0.113.7"),
        (["1.1.1.1, 203.0.113.7, 10.0.0.2"], 2, "203.0.113.7"),
        (["1.1.1.1, 203.0.113.7", "10.0.0.2"], 2, "203.0.113.7"),  # lines join as one list
        (["1.1.1.1,, 203.0.113.7,"], 1, "203.0.113.7"),  # empty items are not hops
        (["203.0.113.7"], 3, "203.0.113.7"),  # fewer hops than proxies: the leftmost
        ([" , "], 1, ""),
    ],
)
def test_client_key(values: list[str], trusted: int, key: str) -> None:
    assert client_key(values, trusted) == key


async def test_no_per_ip_limit_without_the_header_setting(svc: Service) -> None:
    """GOTRUE_RATE_LIMIT_HEADER unset: no per-IP limit at all."""
    for _ in range(35):
        response = await svc.http.post(
            "/recover", json={"email": email()}, headers={"X-Real-IP": "203.0.113.7"}
        )
        assert response.status_code == 200


def test_token_bucket_refills_and_forgets_full_buckets() -> None:
    """rate tokens a second up to burst; full buckets are dropped when many keys pile up."""
    bucket = TokenBucket(rate=1.0, burst=2)
    assert [bucket.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert bucket.allow("a", 0.5) is False
    assert bucket.allow("a", 1.6) is True
    for index in range(10_001):
        bucket.allow(f"k{index}", 100.0)
    assert bucket.allow("late", 1000.0) is True
    assert len(bucket._buckets) == 1  # the rest had refilled by then


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_allowance_connections_are_reused_on_postgres(
    make_service: Callable[..., Any],
) -> None:
    """Ten mails take their units on pooled connections, not on ten new ones
    (a new PostgreSQL connection per mail made /recover three times slower)."""
    svc: Service = await make_service(rate_limit_email_sent="100")
    connects: list[object] = []
    allowance = _allowance_engine(svc.app.state.service.engine)
    event.listen(allowance.sync_engine, "connect", lambda *_: connects.append(1))
    addresses = await _known_users(svc, 10)
    for address in addresses:
        assert (await svc.http.post("/recover", json={"email": address})).status_code == 200
    assert len([m for m in svc.sent if m.to in addresses]) == 10
    assert 1 <= len(connects) <= 2


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_allowance_survives_a_dropped_connection(
    make_service: Callable[..., Any],
) -> None:
    """The server drops the allowance's pooled connection: the next mail still goes,
    on a new connection (the pool is not pinged before each use)."""
    svc: Service = await make_service(rate_limit_email_sent="100")
    first, second = await _known_users(svc, 2)
    assert (await svc.http.post("/recover", json={"email": first})).status_code == 200
    allowance = _allowance_engine(svc.app.state.service.engine)
    async with allowance.connect() as pooled:  # the one connection the pool holds
        pid = (await pooled.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    async with svc.app.state.service.engine.connect() as admin:
        await admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    connects: list[object] = []
    event.listen(allowance.sync_engine, "connect", lambda *_: connects.append(1))
    assert (await svc.http.post("/recover", json={"email": second})).status_code == 200
    assert [m.to for m in svc.sent if m.to == second] == [second]
    assert len(connects) == 1


_CLIENT = {"X-Real-IP": "203.0.113.9"}
# One token back per 5 minutes: a slow machine cannot refill a burst mid-test.
_SLOW_REFILL = {"rate_limit_otp": 1, "rate_limit_verify": 1, "rate_limit_token_refresh": 1}


async def _answer(svc: Service, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    """Status and error_code (empty for a success) of one request from ``_CLIENT``."""
    response = await svc.http.request(method, path, headers=_CLIENT, **kwargs)
    code = response.json().get("error_code", "") if response.status_code >= 400 else ""
    return response.status_code, code


async def _spend(svc: Service, method: str, path: str, count: int = 30, **kwargs: Any) -> None:
    """Take ``count`` of ``_CLIENT``'s tokens (the burst is 30) behind ``method path``."""
    for _ in range(count):
        status, _ = await _answer(svc, method, path, **kwargs)
        assert status != 429, (method, path)


_REFUSED = (429, "over_request_rate_limit")
_OTP_ROUTES = [("POST", "/signup"), ("POST", "/recover"), ("POST", "/resend")]
_OTP_ROUTES += [("POST", "/magiclink"), ("POST", "/otp"), ("PUT", "/user")]


async def test_each_route_draws_on_its_own_limit(make_service: Callable[..., Any]) -> None:
    """GOTRUE_RATE_LIMIT_OTP is one bucket for /signup, /recover, /resend, /magiclink,
    /otp and PUT /user; GOTRUE_RATE_LIMIT_VERIFY one for GET and POST /verify;
    GOTRUE_RATE_LIMIT_TOKEN_REFRESH one for /token; no other route is limited."""
    svc: Service = await make_service(rate_limit_header="X-Real-IP", **_SLOW_REFILL)
    await _spend(svc, "POST", "/recover", json={})
    for method, path in _OTP_ROUTES:  # with an address: not an anonymous sign-up
        body = {"email": "a@example.com"}
        assert await _answer(svc, method, path, json=body) == _REFUSED, (method, path)
    assert await _answer(svc, "GET", "/verify") != _REFUSED
    assert await _answer(svc, "POST", "/token", json={}) != _REFUSED
    unlimited = [("GET", "/health"), ("GET", "/settings"), ("GET", "/user"), ("POST", "/logout")]
    unlimited += [("GET", "/reauthenticate"), ("POST", "/invite"), ("POST", "/factors")]
    for method, path in unlimited:
        assert await _answer(svc, method, path) != _REFUSED, (method, path)

    await _spend(svc, "GET", "/verify", 29)  # one went above
    assert await _answer(svc, "POST", "/verify", json={}) == _REFUSED
    assert await _answer(svc, "GET", "/verify") == _REFUSED
    assert await _answer(svc, "POST", "/token", json={}) != _REFUSED

    await _spend(svc, "POST", "/token?grant_type=password", 28, json={})  # two went above
    assert await _answer(svc, "POST", "/token?grant_type=refresh_token", json={}) == _REFUSED


async def test_the_limit_is_checked_before_auth_and_the_body_fields(
    make_service: Callable[..., Any],
) -> None:
    """Over the limit, a request is refused whatever it carries: no token on PUT /user,
    fields of the wrong type; the refusal is GoTrue's error body."""
    svc: Service = await make_service(rate_limit_header="X-Real-IP", **_SLOW_REFILL)
    await _spend(svc, "POST", "/otp", json={})
    assert await _answer(svc, "PUT", "/user", json={"email": 1}) == _REFUSED
    assert await _answer(svc, "POST", "/signup", json={"email": ["a"], "password": 2}) == _REFUSED
    refused = await svc.http.post("/recover", json={"email": 3}, headers=_CLIENT | NEW_FORMAT)
    assert (refused.status_code, refused.json()) == (
        429,
        {"code": "over_request_rate_limit", "message": "Request rate limit reached"},
    )
