"""Hostile input gets a 4xx, and nothing is written (#14 items 2-4).

Each probe is one the security review sent: lone surrogates and NUL in a
body, a query or a key; passwords over bcrypt's 72 bytes; numbers past what
the database takes; an address with a trailing newline; a line break that
user data brings into a mail subject. Every test runs on SQLite and on
PostgreSQL (NUL is what PostgreSQL's text cannot hold).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from apitask.mail import PermanentMailError
from apitask_auth.http.inputs import find_unstorable

from ._accounts import CHALLENGE, PASSWORD, bearer, signed_in
from .conftest import SECRET, email

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from apitask.mail import Message

    from .conftest import Service


def _raw_json(value: Any) -> dict[str, Any]:
    """Request arguments for a JSON body that may hold lone surrogates (escaped, as
    a client would send them: httpx's own encoder cannot)."""
    return {
        "content": json.dumps(value).encode(),
        "headers": {"Content-Type": "application/json"},
    }


def _refused(response: httpx.Response, where: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "validation_failed"
    assert body["msg"] == (
        f"Invalid text in {where}: NUL characters and unpaired surrogates are not allowed"
    )


async def _emails(svc: Service) -> list[str]:
    """Every stored address, read through the admin list (which must keep working)."""
    listed = await svc.http.get("/admin/users?per_page=1000", headers=svc.admin_headers())
    assert listed.status_code == 200, listed.text
    return [user["email"] for user in listed.json()["users"]]


# ---------------------------------------------------------------- item 2: unstorable text


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"p": "\ud800"}, "body field data.p"),
        ({"p": "a\x00b"}, "body field data.p"),
        ({"p": {"deep": ["ok", {"x": "\udfff"}]}}, "body field data.p.deep[1].x"),
        ({"\ud800": "key"}, "a key of body field data"),
        ({"k\x00": "key"}, "a key of body field data"),
    ],
)
async def test_signup_refuses_unstorable_metadata_and_stores_nothing(
    svc: Service, data: dict[str, Any], where: str
) -> None:
    """The probe stored the user, answered 500, and broke the admin list for good."""
    address = email()
    response = await svc.http.post(
        "/signup", **_raw_json({"email": address, "password": PASSWORD, "data": data})
    )
    _refused(response, where)
    assert address not in await _emails(svc)
    assert svc.sent == []


async def test_user_update_refuses_unstorable_metadata(svc: Service) -> None:
    address, session = await signed_in(svc)
    response = await svc.http.put(
        "/user",
        content=json.dumps({"data": {"p": "\ud800"}}).encode(),
        headers={"Content-Type": "application/json", **bearer(session)},
    )
    _refused(response, "body field data.p")
    me = await svc.http.get("/user", headers=bearer(session))
    assert me.status_code == 200
    assert "p" not in me.json()["user_metadata"]
    login = await svc.http.post(
        "/token?grant_type=password", json={"email": address, "password": PASSWORD}
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "where"),
    [
        ("POST", "/verify", {"type": "signup", "token_hash": "\ud800"}, "body field token_hash"),
        ("POST", "/verify", {"type": "signup", "token_hash": "ab\x00cd"}, "body field token_hash"),
        (
            "POST",
            "/verify",
            {"type": "email", "email": "a@example.com", "token": "12\x0034"},
            "body field token",
        ),
        (
            "POST",
            "/token?grant_type=pkce",
            {"auth_code": "abc\x00def", "code_verifier": "v" * 50},
            "body field auth_code",
        ),
        ("POST", "/recover", {"email": "a\x00@example.com"}, "body field email"),
        ("POST", "/magiclink", {"email": "\ud800@example.com"}, "body field email"),
        ("POST", "/otp", {"email": "a@example.com", "data": {"x": "\x00"}}, "body field data.x"),
        ("POST", "/admin/users", {"email": "a@example.com", "aud": "x\x00"}, "body field aud"),
        (
            "POST",
            "/invite",
            {"email": "a@example.com", "data": {"n": "\ud83d"}},
            "body field data.n",
        ),
        ("POST", "/signup", "\ud800", "the body"),
        ("GET", "/verify?type=signup&token=abc%00def", None, "query parameter token"),
        ("GET", "/admin/users?filter=%00", None, "query parameter filter"),
        ("GET", "/admin/users?a%00=1", None, "a query parameter name"),
        ("GET", "/admin/users/%00", None, "path parameter user_id"),
    ],
)
async def test_unstorable_text_anywhere_is_refused(
    svc: Service, method: str, path: str, body: Any, where: str
) -> None:
    """Bodies at any depth, keys, query names and values, path parameters: one check."""
    before = await _emails(svc)
    arguments = _raw_json(body) if body is not None else {}
    arguments.setdefault("headers", {}).update(svc.admin_headers())
    response = await svc.http.request(method, path, **arguments)
    _refused(response, where)
    assert await _emails(svc) == before


_SIGNUP_WITH_NUL = (
    '{"email": "a@example.com", "password": "secret-password", "data": {"p": "\\u0000"}}'
)


@pytest.mark.parametrize(
    "body",
    [
        # A surrogate encoded as UTF-8 bytes: json.loads decodes it with surrogatepass.
        b'{"email": "a@example.com", "password": "secret-password", "data": {"p": "\xed\xa0\x80"}}',
        # UTF-16, which json.loads detects: a raw lone surrogate and a raw NUL.
        '{"email": "a@example.com", "password": "secret-password", "data": {"p": "\ud800"}}'.encode(
            "utf-16-le", "surrogatepass"
        ),
        # UTF-32, with an escape.
        _SIGNUP_WITH_NUL.encode("utf-32"),
    ],
)
async def test_unstorable_text_in_raw_bytes_is_refused(svc: Service, body: bytes) -> None:
    """Not only escapes: the bytes FastAPI's JSON parsing turns into such strings."""
    before = await _emails(svc)
    response = await svc.http.post(
        "/signup", content=body, headers={"Content-Type": "application/json"}
    )
    _refused(response, "body field data.p")
    assert await _emails(svc) == before


def test_the_walk_survives_the_deepest_json_the_parser_takes() -> None:
    deep: Any = "\x00"
    for _ in range(900):  # json.loads takes this; a recursive walk would not
        deep = [deep]
    assert find_unstorable(json.loads(json.dumps(deep))) == "body field " + "[0]" * 900
    assert find_unstorable({"\x00": 1}) == "a key of the body"
    assert find_unstorable({"a": [1, 2.5, None, True, "fine"]}) is None


async def test_escaped_pairs_and_backslashes_are_fine(svc: Service) -> None:
    """A surrogate pair (an emoji as ``json.dumps`` escapes it) and a literal
    ``\\u0000`` (an escaped backslash) are storable text: looked at, let through."""
    address = email()
    data = {"emoji": "\U0001f600", "path": "C:\\u0000", "name": "Zoë"}
    response = await svc.http.post(
        "/signup", **_raw_json({"email": address, "password": PASSWORD, "data": data})
    )
    assert response.status_code == 200, response.text
    assert response.json()["user_metadata"] == data


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe not json", b'{"email": "\xff"}', b'{"email": "\\u0000', b'{"a": "\\ud800"'],
)
async def test_bodies_that_are_not_json_are_left_to_the_route(svc: Service, body: bytes) -> None:
    """Undecodable or truncated: the route's own parsing answers, as before."""
    response = await svc.http.post(
        "/signup", content=body, headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()["error_code"]) == (400, "bad_json")


# ---------------------------------------------------------------- item 3: other 500s


@pytest.mark.parametrize("password", ["é" * 40, "😀" * 20, "a" * 73])
async def test_passwords_over_72_bytes_are_refused_as_gotrue_does(
    svc: Service, password: str
) -> None:
    """bcrypt takes 72 bytes; GoTrue's limit is Go's len(), which counts bytes."""
    assert len(password) <= 73
    expected = (400, "validation_failed", "Password cannot be longer than 72 characters")
    address = email()
    signup = await svc.http.post("/signup", json={"email": address, "password": password})
    assert (signup.status_code, signup.json()["error_code"], signup.json()["msg"]) == expected
    admin = await svc.http.post(
        "/admin/users",
        json={"email": address, "password": password},
        headers=svc.admin_headers(),
    )
    assert (admin.status_code, admin.json()["error_code"]) == expected[:2]
    assert address not in await _emails(svc)
    _, session = await signed_in(svc)
    update = await svc.http.put("/user", json={"password": password}, headers=bearer(session))
    assert (update.status_code, update.json()["error_code"]) == expected[:2]


async def test_a_72_byte_password_still_works(svc: Service) -> None:
    password = "é" * 36  # 72 bytes
    address = email()
    signup = await svc.http.post("/signup", json={"email": address, "password": password})
    assert signup.status_code == 200, signup.text


@pytest.mark.parametrize("name", ["page", "per_page"])
@pytest.mark.parametrize("value", ["99999999999999999999", str(2**63)])
async def test_page_numbers_past_64_bits_are_refused(svc: Service, name: str, value: str) -> None:
    response = await svc.http.get(f"/admin/users?{name}={value}", headers=svc.admin_headers())
    assert response.status_code == 400, response.text
    assert response.json()["msg"] == (
        f"Bad Pagination Parameters: {name} '{value}' is out of range"
    )


async def test_a_page_whose_offset_overflows_is_refused(svc: Service) -> None:
    response = await svc.http.get(
        f"/admin/users?page={2**62}&per_page=1000", headers=svc.admin_headers()
    )
    assert response.status_code == 400
    assert "page" in response.json()["msg"]
    last = await svc.http.get(f"/admin/users?page={2**53}&per_page=2", headers=svc.admin_headers())
    assert (last.status_code, last.json()["users"]) == (200, [])


@pytest.mark.parametrize("duration", ["99999999999h", "2562048h", "1e400", "-99999999999h"])
async def test_ban_durations_past_gos_range_are_refused(svc: Service, duration: str) -> None:
    """Go's durations end at about 292 years; GoTrue answers 400 beyond."""
    address = email()
    created = await svc.http.post(
        "/admin/users",
        json={"email": address, "password": PASSWORD, "ban_duration": duration},
        headers=svc.admin_headers(),
    )
    assert created.status_code == 400, created.text
    assert created.json()["msg"] == "invalid format for ban duration"
    assert address not in await _emails(svc)


async def test_a_long_ban_within_range_is_kept(svc: Service) -> None:
    created = await svc.http.post(
        "/admin/users",
        json={"email": email(), "password": PASSWORD, "ban_duration": "2562047h"},
        headers=svc.admin_headers(),
    )
    assert created.status_code == 200, created.text
    assert created.json()["banned_until"].startswith("2")


@pytest.mark.parametrize("hostile", ["Ann\r\nBcc: victim@example.net", "Ann\nX-Evil: 1"])
async def test_a_line_break_from_user_data_into_a_subject_is_a_400(
    make_service: Callable[..., Any], hostile: str
) -> None:
    """The mail is refused, never sent with an extra header; nothing is stored.

    (GoTrue sends it with the subject Q-encoded; the library refuses to send
    a different mail from the one asked for, so the request is refused.)
    """
    svc = await make_service(mailer_subjects={"confirmation": "Welcome {{ .Data.name }}"})
    address = email()
    response = await svc.http.post(
        "/signup", json={"email": address, "password": PASSWORD, "data": {"name": hostile}}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "validation_failed"
    assert response.json()["msg"].startswith(
        "Error sending confirmation email: subject contains the control character"
    )
    assert svc.sent == []
    assert address not in await _emails(svc)


class _RefusingClient:
    """A mail server whose reply quotes the recipient, as many do."""

    async def send(self, message: Message) -> None:
        raise PermanentMailError(f"550 5.1.1 <{message.to}>: Recipient address rejected", code=550)


async def test_a_mail_500_logs_its_cause_without_the_address(
    make_service: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    svc = await make_service(transport=_RefusingClient(), mailer_delivery="inline")
    address = email()
    with caplog.at_level(logging.ERROR, logger="apitask_auth"):
        response = await svc.http.post("/signup", json={"email": address, "password": PASSWORD})
    assert response.status_code == 500
    assert response.json()["msg"] == "Error sending confirmation email"
    (record,) = [r for r in caplog.records if r.name == "apitask_auth"]
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert text.startswith("Error sending confirmation email on POST /signup: Traceback")
    assert "PermanentMailError: 550 5.1.1 <***@example.com>: Recipient address rejected" in text
    assert address not in text


# ---------------------------------------------------------------- item 4: one address rule


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\u2028", " "])
async def test_a_trailing_newline_does_not_make_a_second_account(
    make_service: Callable[..., Any], suffix: str
) -> None:
    """With autoconfirm, the probe got a confirmed twin of the victim's account."""
    svc = await make_service(mailer_autoconfirm=True)
    before = await _emails(svc)
    victim = email()
    assert (
        await svc.http.post("/signup", json={"email": victim, "password": PASSWORD})
    ).status_code == 200
    twin = await svc.http.post("/signup", json={"email": victim + suffix, "password": PASSWORD})
    assert twin.status_code == 400, twin.text
    assert (twin.json()["error_code"], twin.json()["msg"]) == (
        "validation_failed",
        "Unable to validate email address: invalid format",
    )
    assert await _emails(svc) == [victim, *before]


async def test_every_address_field_uses_the_one_rule(svc: Service) -> None:
    """signup, otp, magiclink, recover, resend, invite, admin create/update,
    PUT /user, generate_link (email and new_email): all 400 invalid format."""
    bad = email() + "\n"
    admin = svc.admin_headers()
    existing, session = await signed_in(svc)
    listed = await svc.http.get("/admin/users", headers=admin)
    user_id = listed.json()["users"][0]["id"]  # newest first: the one just made
    before = await _emails(svc)
    probes: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        ("POST", "/signup", {"email": bad, "password": PASSWORD}, {}),
        ("POST", "/otp", {"email": bad}, {}),
        ("POST", "/magiclink", {"email": bad}, {}),
        ("POST", "/recover", {"email": bad}, {}),
        ("POST", "/resend", {"type": "signup", "email": bad}, {}),
        ("POST", "/invite", {"email": bad}, admin),
        ("POST", "/admin/users", {"email": bad, "password": PASSWORD}, admin),
        ("PUT", f"/admin/users/{user_id}", {"email": bad}, admin),
        ("PUT", "/user", {"email": bad}, bearer(session)),
        ("POST", "/admin/generate_link", {"type": "magiclink", "email": bad}, admin),
        (
            "POST",
            "/admin/generate_link",
            {"type": "email_change_new", "email": existing, "new_email": bad},
            admin,
        ),
    ]
    for method, path, body, headers in probes:
        response = await svc.http.request(method, path, json=body, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["msg"] == "Unable to validate email address: invalid format", path
    assert await _emails(svc) == before
    assert len(svc.sent) == 1  # the sign-up confirmation of signed_in


async def test_sign_in_with_a_malformed_address_is_an_unknown_address(svc: Service) -> None:
    address, _ = await signed_in(svc)
    for variant in (address + "\n", address + "\x0b", "not an address"):
        response = await svc.http.post(
            "/token?grant_type=password", json={"email": variant, "password": PASSWORD}
        )
        assert (response.status_code, response.json()["error_code"]) == (
            400,
            "invalid_credentials",
        )


async def test_the_jwt_email_is_the_normalized_address(make_service: Callable[..., Any]) -> None:
    svc = await make_service(mailer_autoconfirm=True)
    local = email().split("@")[0]
    signup = await svc.http.post(
        "/signup", json={"email": f"{local.upper()}@EXAMPLE.com", "password": PASSWORD}
    )
    assert signup.status_code == 200, signup.text
    claims = jwt.decode(
        signup.json()["access_token"], SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    assert claims["email"] == f"{local}@example.com"


async def test_pkce_challenges_are_matched_whole(svc: Service) -> None:
    response = await svc.http.post(
        "/signup",
        json={
            "email": email(),
            "password": PASSWORD,
            "code_challenge": CHALLENGE + "\n",
            "code_challenge_method": "s256",
        },
    )
    assert (response.status_code, response.json()["error_code"]) == (400, "validation_failed")
