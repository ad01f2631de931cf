"""Admin users with phone numbers (§3.16, GoTrue's adminUserCreate / adminUserUpdate):
create a phone user (or one with an address and a number), set and confirm a
user's number, and the taken-number answers."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest

from apitask_auth.accounts.users import PhoneTakenError, create_user, find_user_by_phone
from apitask_auth.routes import admin as admin_routes

from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

PASSWORD = "secret-password"


def _number() -> str:
    return f"+1555{random.randrange(10**7):07d}"


async def _phone_service(make_service: Callable[..., Any]) -> Service:
    service: Service = await make_service(external_phone_enabled=True)
    return service


async def _created(svc: Service, body: dict[str, Any]) -> dict[str, Any]:
    response = await svc.http.post("/admin/users", json=body, headers=svc.admin_headers())
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()
    return user


def _providers(user: dict[str, Any]) -> tuple[list[str], list[str]]:
    identities = sorted(identity["provider"] for identity in user["identities"])
    return user["app_metadata"]["providers"], identities


async def test_admin_creates_a_confirmed_phone_user_who_signs_in_with_the_password(
    make_service: Callable[..., Any],
) -> None:
    """The number in stored form, a ``phone`` identity and provider; with
    ``phone_confirm`` it is confirmed, so the password grant with the phone works."""
    svc = await _phone_service(make_service)
    number = _number()
    user = await _created(svc, {"phone": number, "password": PASSWORD, "phone_confirm": True})
    assert (user["phone"], user["email"]) == (number.removeprefix("+"), "")
    assert user["phone_confirmed_at"] is not None
    assert _providers(user) == (["phone"], ["phone"])
    assert user["app_metadata"]["provider"] == "phone"

    signed_in = await svc.http.post(
        "/token?grant_type=password", json={"phone": number, "password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["user"]["id"] == user["id"]


async def test_admin_creates_a_user_with_an_address_and_a_number(
    make_service: Callable[..., Any],
) -> None:
    """Both identities, ``email`` first (GoTrue's order); neither confirmed unless asked."""
    svc = await _phone_service(make_service)
    address, number = email(), _number()
    user = await _created(svc, {"email": address, "phone": number, "email_confirm": True})
    assert (user["email"], user["phone"]) == (address, number.removeprefix("+"))
    assert user["email_confirmed_at"] is not None and user.get("phone_confirmed_at") is None
    assert _providers(user) == (["email", "phone"], ["email", "phone"])


async def test_admin_create_refuses_a_taken_or_invalid_number(
    make_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taken number is refused by the first look-up: not run again as a lost race."""
    svc = await _phone_service(make_service)
    headers = svc.admin_headers()
    number = _number()
    await _created(svc, {"phone": number})
    look_ups: list[str] = []

    async def counted(conn: Any, phone: str, aud: str) -> Any:
        look_ups.append(phone)
        return await find_user_by_phone(conn, phone, aud)

    monkeypatch.setattr(admin_routes, "find_user_by_phone", counted)
    for body in ({"phone": number}, {"email": email(), "phone": number.removeprefix("+")}):
        look_ups.clear()
        taken = await svc.http.post("/admin/users", json=body, headers=headers)
        assert (taken.status_code, taken.json()["error_code"]) == (422, "phone_exists"), body
        assert taken.json()["msg"] == "Phone number already registered by another user"
        assert len(look_ups) == 1, body
    invalid = await svc.http.post("/admin/users", json={"phone": "+0123"}, headers=headers)
    assert (invalid.status_code, invalid.json()["msg"]) == (
        400,
        "Invalid phone number format (E.164 required)",
    )


async def test_admin_sets_and_confirms_a_users_number(make_service: Callable[..., Any]) -> None:
    """PUT with ``phone`` sets the number and makes the ``phone`` identity; with
    ``phone_confirm`` it is confirmed; a later number moves the identity; an
    empty one changes nothing; another user's number is 422 ``phone_exists``."""
    svc = await _phone_service(make_service)
    headers = svc.admin_headers()
    user = (await svc.http.post("/admin/users", json={"email": email()}, headers=headers)).json()
    url = f"/admin/users/{user['id']}"
    number, later = _number(), _number()

    updated = await svc.http.put(url, json={"phone": number}, headers=headers)
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["phone"], body.get("phone_confirmed_at")) == (number.removeprefix("+"), None)
    assert sorted(identity["provider"] for identity in body["identities"]) == ["email", "phone"]

    confirmed = (await svc.http.put(url, json={"phone_confirm": True}, headers=headers)).json()
    assert confirmed["phone_confirmed_at"] is not None

    moved = (await svc.http.put(url, json={"phone": later}, headers=headers)).json()
    assert moved["phone"] == later.removeprefix("+")
    [phone_identity] = [i for i in moved["identities"] if i["provider"] == "phone"]
    assert phone_identity["identity_data"]["phone"] == later.removeprefix("+")
    kept = (await svc.http.put(url, json={"phone": ""}, headers=headers)).json()
    assert kept["phone"] == later.removeprefix("+")

    other = (await svc.http.post("/admin/users", json={"phone": number}, headers=headers)).json()
    refused = await svc.http.put(url, json={"phone": number}, headers=headers)
    assert (refused.status_code, refused.json()["error_code"]) == (422, "phone_exists")
    # Its own number again is no change, not a conflict.
    same = await svc.http.put(
        f"/admin/users/{other['id']}", json={"phone": number}, headers=headers
    )
    assert same.status_code == 200, same.text


async def test_a_user_with_an_address_and_a_taken_number_loses_to_the_index(
    make_service: Callable[..., Any],
) -> None:
    """The race the look-up cannot see: the number's unique index refuses the row
    and the writer gets :class:`PhoneTakenError` (the admin route's retry then
    answers 422 ``phone_exists``), not an IntegrityError (a 500)."""
    svc = await _phone_service(make_service)
    holder = await _created(svc, {"phone": _number()})
    async with svc.app.state.service.engine.begin() as conn:
        with pytest.raises(PhoneTakenError):
            await create_user(
                conn,
                email=email(),
                phone=holder["phone"],
                aud=holder["aud"],
                role="authenticated",
                encrypted_password=None,
                user_metadata={},
            )
