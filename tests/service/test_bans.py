"""An admin's ban, route by route: GoTrue's ``user_banned`` with each route's status,
and, where a flow must not tell which accounts exist, only to whoever proved the secret."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._accounts import PASSWORD, admin_created, bearer, signed_in
from ._mfa import error
from ._phones import phone, phone_service
from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import httpx

    from .conftest import Service

BANNED = "User is banned"
WRONG_CODE = (403, "otp_expired", "Token has expired or is invalid")


async def _ban(svc: Service, user_id: str) -> None:
    response = await svc.http.put(
        f"/admin/users/{user_id}", json={"ban_duration": "1h"}, headers=svc.admin_headers()
    )
    assert response.status_code == 200, response.text


async def _only_the_right_code_tells(
    verify: Callable[[str, str], Awaitable[httpx.Response]], banned: str, unknown: str, code: str
) -> None:
    """``banned``'s wrong code answers as ``unknown``'s; its right ``code``, the ban."""
    wrong = "1" * len(code) if code == "0" * len(code) else "0" * len(code)
    assert error(await verify(unknown, wrong)) == WRONG_CODE
    assert error(await verify(banned, wrong)) == WRONG_CODE
    assert error(await verify(banned, code)) == (403, "user_banned", BANNED)


async def test_a_ban_answers_with_each_routes_status(svc: Service) -> None:
    """A signed-in user, banned: the refresh grant is GoTrue's 400 "Invalid Refresh
    Token: User Banned", a request with the access token our 403 "User is banned",
    both ``user_banned``."""
    _, session = await signed_in(svc)
    await _ban(svc, session["user"]["id"])
    refresh = await svc.http.post(
        "/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )
    assert error(refresh) == (400, "user_banned", "Invalid Refresh Token: User Banned")
    me = await svc.http.get("/user", headers=bearer(session))
    assert error(me) == (403, "user_banned", BANNED)


async def test_a_wrong_password_of_a_banned_account_answers_as_an_unknown_one(
    svc: Service,
) -> None:
    """The password grant tells of the ban only with the right password (400
    ``user_banned``); a wrong one gets the answer an unknown address gets."""
    address = email()
    await _ban(svc, (await admin_created(svc, address))["id"])

    async def sign_in(who: str, password: str) -> tuple[int, Any]:
        response = await svc.http.post(
            "/token?grant_type=password", json={"email": who, "password": password}
        )
        return response.status_code, response.json()

    unknown = await sign_in(email(), "not-the-password")
    assert unknown[0] == 400
    assert await sign_in(address, "not-the-password") == unknown
    right = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert error(right) == (400, "user_banned", BANNED)


async def test_a_wrong_code_of_a_banned_address_answers_as_an_unknown_one(svc: Service) -> None:
    """A typed-in mail code: a banned account's wrong code is refused as an unknown
    address's is; its right code is GoTrue's 403 ``user_banned``."""
    address = email()
    signup = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    assert signup.status_code == 200, signup.text
    await _ban(svc, signup.json()["id"])

    async def verify(who: str, code: str) -> httpx.Response:
        return await svc.http.post("/verify", json={"type": "signup", "email": who, "token": code})

    await _only_the_right_code_tells(verify, address, email(), svc.otp(address))


async def test_a_wrong_code_of_a_banned_number_answers_as_an_unknown_one(
    make_service: Callable[..., Any],
) -> None:
    """A texted code: a banned number's wrong code is refused as an unknown
    number's is; its right code is GoTrue's 403 ``user_banned``."""
    phones = await phone_service(make_service)
    number = phone()
    signup = await phones.http.post("/signup", json={"phone": number, "password": PASSWORD})
    assert signup.status_code == 200, signup.text
    await _ban(phones.svc, signup.json()["id"])

    async def verify(who: str, code: str) -> httpx.Response:
        return await phones.http.post("/verify", json={"type": "sms", "phone": who, "token": code})

    await _only_the_right_code_tells(verify, number, phone(), phones.texter.code(number))
