"""Admin endpoints: invite, generate_link, users CRUD (§3.6, §3.7, §3.16).

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fastapi import Request  # noqa: TC002 - FastAPI reads the annotation at runtime
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete, func, select

from apitask_auth.accounts.audit import audit
from apitask_auth.accounts.bodies import GenerateLinkBody, UserBody, UserListBody
from apitask_auth.accounts.flows import (
    check_password_strength,
    create_email_user,
    send_token_mail,
    validate_email,
)
from apitask_auth.accounts.phones import validate_phone
from apitask_auth.accounts.security import generate_otp, hash_password, random_password, token_hash
from apitask_auth.accounts.users import (
    PhoneTakenError,
    SentAtColumn,
    User,
    confirm_email,
    create_user,
    find_user_by_email,
    find_user_by_phone,
    get_user,
    retry_if_taken,
    set_email_identity,
    set_one_time_token,
    set_phone_identity,
    update_user,
    user_body,
)
from apitask_auth.config import parse_duration
from apitask_auth.errors import APIError, ErrorCode, bad_request, not_found, unprocessable
from apitask_auth.http.deps import Admin, Svc, request_aud
from apitask_auth.http.models import (  # noqa: TC001 - FastAPI reads these annotations at runtime
    AdminUserParams,
    DeleteUserParams,
    GenerateLinkParams,
    InviteParams,
)
from apitask_auth.http.redirects import action_link, allowed_redirect, redirect_to
from apitask_auth.storage.rows import user_row
from apitask_auth.storage.tables import identities, mfa_factors, now, sessions, users

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from apitask_auth.config import Settings

__all__ = [
    "create_admin_user",
    "delete_admin_user",
    "existing_user",
    "generate_link",
    "get_admin_user",
    "invite",
    "list_users",
    "update_admin_user",
]


async def _audit(
    conn: AsyncConnection, request: Request, admin: dict[str, Any], action: str, user: User
) -> None:
    """An admin action: the actor is the token's subject, named by its role (§1.3)."""
    traits = {"user_id": user["id"], "user_email": user["email"] or ""}
    actor = str(admin.get("sub") or "00000000-0000-0000-0000-000000000000")
    await audit(conn, request, actor, str(admin.get("role")), action, traits)


def _email_exists() -> APIError:
    return unprocessable(
        ErrorCode.EMAIL_EXISTS, "A user with this email address has already been registered"
    )


def _phone_exists() -> APIError:
    """:class:`PhoneTakenError`'s answer, for a number a look-up found taken: not that
    error, which :func:`retry_if_taken` would take for a lost race and run again."""
    taken = PhoneTakenError()
    return APIError(taken.status, taken.code, taken.message)


async def _invitee(
    conn: AsyncConnection, settings: Settings, email: str, aud: str, data: dict[str, Any]
) -> User:
    """The user to invite: a new one, or an existing unconfirmed one; never a confirmed one."""
    user = await find_user_by_email(conn, email, aud)
    if user is not None and user["email_confirmed_at"] is not None:
        raise _email_exists()
    if user is None:
        user = await create_email_user(
            conn,
            settings,
            email=email,
            aud=aud,
            encrypted_password=None,
            user_metadata=data,
        )
    return user


async def invite(params: InviteParams, request: Request, svc: Svc, admin: Admin) -> Response:
    """Create (or reuse an unconfirmed) user and mail them an invite."""
    settings = svc.settings
    email = validate_email(params.email)
    aud = request_aud(settings, request, admin)
    redirect = redirect_to(settings, request)

    async def attempt() -> Response:
        async with svc.engine.begin() as conn:
            user = await _invitee(conn, settings, email, aud, params.data or {})
            user = await send_token_mail(
                conn, settings, svc.mailer, request, user, "invite", redirect
            )
            user = await update_user(conn, user["id"], invited_at=now())
            await _audit(conn, request, admin, "user_invited", user)
            return JSONResponse((await user_body(conn, user)).model_dump())

    return await retry_if_taken(attempt)  # a concurrent creation of the address: see _invitee


_LINK_TYPES: dict[str, tuple[str, SentAtColumn, str]] = {
    # type -> (one-time token type, *_sent_at column, link type)
    "signup": ("confirmation_token", "confirmation_sent_at", "signup"),
    "invite": ("confirmation_token", "confirmation_sent_at", "invite"),
    "magiclink": ("recovery_token", "recovery_sent_at", "magiclink"),
    "recovery": ("recovery_token", "recovery_sent_at", "recovery"),
}


async def generate_link(
    params: GenerateLinkParams, request: Request, svc: Svc, admin: Admin
) -> Response:
    """Make the link (and OTP) a mail would carry, without sending anything."""
    settings = svc.settings
    kind = params.type or ""
    if kind not in _LINK_TYPES and kind not in {"email_change_current", "email_change_new"}:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, f"Invalid email action link type requested: {kind}"
        )
    email = validate_email(params.email)
    aud = request_aud(settings, request, admin)
    # The body's redirect_to first; the normalized URL, never the raw input.
    redirect = allowed_redirect(settings, params.redirect_to) or redirect_to(settings, request)
    data = params.data or {}
    otp = generate_otp(settings.otp_length)
    hashed = token_hash(email, otp, settings.jwt_secret)

    async def attempt() -> tuple[UserBody, str, str]:
        link_kind, link_params = kind, params
        async with svc.engine.begin() as conn:
            user = await find_user_by_email(conn, email, aud)
            if link_kind == "magiclink" and user is None:
                link_kind = "signup"
                link_params = link_params.model_copy(update={"password": random_password(64)})
            if link_kind == "signup":
                if user is not None and user["email_confirmed_at"] is not None:
                    raise _email_exists()
                if user is None:
                    if not link_params.password:
                        raise bad_request(
                            ErrorCode.VALIDATION_FAILED, "Signup requires a valid password"
                        )
                    check_password_strength(settings, link_params.password)
                    user = await create_email_user(
                        conn,
                        settings,
                        email=email,
                        aud=aud,
                        encrypted_password=await hash_password(link_params.password),
                        user_metadata=data,
                    )
                elif data:
                    merged = dict(user["raw_user_meta_data"]) | data
                    user = await update_user(conn, user["id"], raw_user_meta_data=merged)
            elif link_kind == "invite":
                user = await _invitee(conn, settings, email, aud, data)
                user = await update_user(conn, user["id"], invited_at=now())
            elif user is None:
                raise not_found(ErrorCode.USER_NOT_FOUND, "User with this email not found")
            stored = hashed
            if link_kind in _LINK_TYPES:
                token_type, sent_at, link_type = _LINK_TYPES[link_kind]
                user = await set_one_time_token(
                    conn, user, token_type, hashed, email, sent_at_column=sent_at
                )
                path = {
                    "recovery": settings.mailer_urlpaths_recovery,
                    "invite": settings.mailer_urlpaths_invite,
                }.get(link_kind, settings.mailer_urlpaths_confirmation)
            else:
                user, stored = await _email_change_link(
                    conn, settings, user, link_params, link_kind, otp, hashed
                )
                link_type, path = "email_change", settings.mailer_urlpaths_email_change
            link = action_link(settings, request, path, stored, link_type, redirect)
            body = await user_body(conn, user)
            return body, link, link_kind

    # A concurrent creation of the address: run again, as for an existing one.
    body, link, kind = await retry_if_taken(attempt)
    answer = GenerateLinkBody(
        **dict(body),
        action_link=link,
        email_otp=otp,
        hashed_token=hashed,
        verification_type=kind,
        redirect_to=redirect,
    )
    return JSONResponse(answer.model_dump())


async def _email_change_link(
    conn: AsyncConnection,
    settings: Settings,
    user: User,
    params: GenerateLinkParams,
    kind: str,
    otp: str,
    hashed: str,
) -> tuple[User, str]:
    if kind == "email_change_current" and not settings.mailer_secure_email_change_enabled:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            "Enable secure email change to generate link for current email",
        )
    new_email = validate_email(params.new_email)
    if await find_user_by_email(conn, new_email, user["aud"]) is not None:
        raise _email_exists()
    user = await update_user(
        conn, user["id"], email_change=new_email, email_change_confirm_status=0
    )
    new_hash = token_hash(
        new_email, otp, settings.jwt_secret
    )  # GoTrue's quirk: the response shows hashed
    user = await set_one_time_token(
        conn,
        user,
        "email_change_token_new",
        new_hash,
        new_email,
        sent_at_column="email_change_sent_at",
    )
    if settings.mailer_secure_email_change_enabled:
        user = await set_one_time_token(
            conn,
            user,
            "email_change_token_current",
            hashed,
            user["email"] or "",
            sent_at_column="email_change_sent_at",
        )
    return user, (hashed if kind == "email_change_current" else new_hash)


def _admin_uuid(user_id: str) -> str:
    try:
        return str(uuid.UUID(user_id))
    except ValueError:
        raise not_found(ErrorCode.VALIDATION_FAILED, "user_id must be an UUID") from None


async def existing_user(conn: AsyncConnection, user_id: str) -> User:
    """The user ``user_id`` names, or GoTrue's loadUser errors (404 either way)."""
    user = await get_user(conn, _admin_uuid(user_id))
    if user is None:
        raise not_found(ErrorCode.USER_NOT_FOUND, "User not found")
    return user


def _page(raw: str | None, default: int, name: str) -> int:
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED,
            f"Bad Pagination Parameters: {name} {raw!r} is not a number",
        ) from None
    if value < 1:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, f"Bad Pagination Parameters: {name} must be positive"
        )
    if value > _MAX_OFFSET:
        raise _out_of_range(name, raw)
    return value


# The largest OFFSET both databases take (a signed 64-bit integer). GoTrue
# parses page numbers as 64-bit too, and answers 400 beyond.
_MAX_OFFSET = 2**63 - 1


def _out_of_range(name: str, raw: str) -> APIError:
    return bad_request(
        ErrorCode.VALIDATION_FAILED, f"Bad Pagination Parameters: {name} {raw!r} is out of range"
    )


async def list_users(
    request: Request,
    svc: Svc,
    admin: Admin,
    page: str | None = None,
    per_page: str | None = None,
    filter: str | None = None,
) -> Response:
    """A page of users, newest first, with X-Total-Count and Link headers."""
    number = _page(page, 1, "page")
    size = min(_page(per_page, 50, "per_page"), 1000)
    offset = (number - 1) * size
    if offset > _MAX_OFFSET:
        raise _out_of_range("page", page or "")
    aud = request_aud(svc.settings, request, admin)
    query = select(users).where(users.c.aud == aud)
    if filter:
        query = query.where(func.lower(users.c.email).contains(filter.lower(), autoescape=True))
    async with svc.engine.connect() as conn:
        total = (
            await conn.execute(select(func.count()).select_from(query.subquery()))
        ).scalar_one()
        rows = await conn.execute(
            query.order_by(users.c.created_at.desc(), users.c.id).limit(size).offset(offset)
        )
        bodies = [await user_body(conn, user_row(row)) for row in rows.all()]
    last = max(1, -(-total // size))
    base = str(request.url.remove_query_params(["page", "per_page"]))
    sep = "&" if "?" in base else "?"
    links = []
    if number < last:
        links.append(f'<{base}{sep}page={number + 1}&per_page={size}>; rel="next"')
    links.append(f'<{base}{sep}page={last}&per_page={size}>; rel="last"')
    return JSONResponse(
        UserListBody(users=bodies, aud=aud).model_dump(),
        headers={"X-Total-Count": str(total), "Link": ", ".join(links)},
    )


def _ban(value: str) -> Any:
    if value == "none":
        return None
    try:
        return now() + parse_duration(value)
    except ValueError:
        raise bad_request(ErrorCode.VALIDATION_FAILED, "invalid format for ban duration") from None


async def create_admin_user(
    params: AdminUserParams, request: Request, svc: Svc, admin: Admin
) -> Response:
    """Create a user with an address, a number or both, directly (no mail, no text)."""
    settings = svc.settings
    if not params.email and not params.phone:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Cannot create a user without either an email or phone"
        )
    if params.password and params.password_hash:
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Only a password or a password hash should be provided"
        )
    user_id = None
    if params.id is not None:
        try:
            parsed = uuid.UUID(params.id)
        except ValueError:
            parsed = uuid.UUID(int=0)
        if parsed.int == 0:
            raise bad_request(ErrorCode.VALIDATION_FAILED, "ID must conform to the uuid v4 format")
        user_id = str(parsed)
    email = validate_email(params.email) if params.email else None
    phone = validate_phone(params.phone) if params.phone else None
    if params.password is not None:
        check_password_strength(settings, params.password)
    if params.password_hash is not None and not params.password_hash.startswith("$2"):
        raise bad_request(
            ErrorCode.VALIDATION_FAILED, "Invalid password hash format (bcrypt expected)"
        )
    password = params.password_hash or await hash_password(params.password or random_password(64))
    aud = params.aud or request_aud(settings, request, admin)
    banned = _ban(params.ban_duration) if params.ban_duration else None

    async def attempt() -> Response:
        async with svc.engine.begin() as conn:
            if email and await find_user_by_email(conn, email, aud) is not None:
                raise _email_exists()
            if phone and await find_user_by_phone(conn, phone, aud) is not None:
                raise _phone_exists()
            if user_id is not None and await get_user(conn, user_id) is not None:
                raise unprocessable(ErrorCode.USER_ALREADY_EXISTS, "User already registered")
            user = await create_user(
                conn,
                email=email,
                phone=phone,
                aud=aud,
                role=params.role or settings.jwt_default_group_name,
                encrypted_password=password,
                user_metadata=params.user_metadata or {},
                app_metadata=params.app_metadata,
                user_id=user_id,
            )
            if params.email_confirm and email:
                user = await confirm_email(conn, user)
            if params.phone_confirm and phone:
                user = await update_user(conn, user["id"], phone_confirmed_at=now())
            if banned is not None:
                user = await update_user(conn, user["id"], banned_until=banned)
            await _audit(conn, request, admin, "user_signedup", user)
            return JSONResponse((await user_body(conn, user)).model_dump())

    return await retry_if_taken(attempt)


async def get_admin_user(user_id: str, svc: Svc) -> Response:
    """One user."""
    async with svc.engine.connect() as conn:
        body = await user_body(conn, await existing_user(conn, user_id))
    return JSONResponse(body.model_dump())


async def update_admin_user(
    user_id: str, params: AdminUserParams, request: Request, svc: Svc, admin: Admin
) -> Response:
    """Change a user directly: address, number, password, confirmation, metadata, ban."""
    settings = svc.settings
    if params.password is not None:
        check_password_strength(settings, params.password)
    if params.ban_duration:
        banned = _ban(params.ban_duration)
    email = validate_email(params.email) if params.email is not None else None
    # An empty number leaves it as it is, as GoTrue.
    phone = validate_phone(params.phone) if params.phone else None
    password_hash = await hash_password(params.password) if params.password else None
    async with svc.engine.begin() as conn:
        user = await existing_user(conn, user_id)
        values: dict[str, Any] = {}
        if params.role is not None:
            values["role"] = params.role
        if params.aud is not None:
            values["aud"] = params.aud
        if password_hash is not None:
            values["encrypted_password"] = password_hash
        elif params.password_hash is not None:
            values["encrypted_password"] = params.password_hash
        if params.user_metadata is not None:
            values["raw_user_meta_data"] = dict(user["raw_user_meta_data"]) | params.user_metadata
        if params.app_metadata is not None:
            values["raw_app_meta_data"] = dict(user["raw_app_meta_data"]) | params.app_metadata
        if params.ban_duration:
            values["banned_until"] = banned
        if email is not None and email != user["email"]:
            other = await find_user_by_email(conn, email, user["aud"])
            if other is not None and other["id"] != user["id"]:
                raise _email_exists()
            values["email"] = email
            await set_email_identity(conn, user, email, verified=bool(params.email_confirm))
        if phone is not None and phone != user["phone"]:
            # Ours: a number another user has is GoTrue's 422 phone_exists, checked
            # first (GoTrue's update meets the unique index and answers 500).
            other = await find_user_by_phone(conn, phone, user["aud"])
            if other is not None and other["id"] != user["id"]:
                raise PhoneTakenError
            values["phone"] = phone
            await set_phone_identity(conn, user, phone, verified=bool(params.phone_confirm))
        if params.phone_confirm and (phone or user["phone"]):
            values["phone_confirmed_at"] = now()
        if values:
            user = await update_user(conn, user["id"], **values)
        if params.email_confirm:
            user = await confirm_email(conn, user)
        await _audit(conn, request, admin, "user_modified", user)
        return JSONResponse((await user_body(conn, user)).model_dump())


async def delete_admin_user(
    user_id: str,
    request: Request,
    svc: Svc,
    admin: Admin,
    params: DeleteUserParams | None = None,
) -> Response:
    """Delete a user, or soft-delete (obfuscate the address, drop its sessions and factors)."""
    async with svc.engine.begin() as conn:
        user = await existing_user(conn, user_id)
        await _audit(conn, request, admin, "user_deleted", user)
        if params is not None and params.should_soft_delete:
            await conn.execute(delete(sessions).where(sessions.c.user_id == user["id"]))
            await conn.execute(delete(identities).where(identities.c.user_id == user["id"]))
            # GoTrue's soft delete hard-deletes the factors too (their challenges follow).
            await conn.execute(delete(mfa_factors).where(mfa_factors.c.user_id == user["id"]))
            await update_user(
                conn,
                user["id"],
                email=None,
                phone=None,
                deleted_at=now(),
                encrypted_password=None,
                raw_user_meta_data={},
                raw_app_meta_data={},
            )
        else:
            await conn.execute(delete(users).where(users.c.id == user["id"]))
    return JSONResponse({})
