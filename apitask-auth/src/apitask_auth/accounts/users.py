"""Users, identities and one-time tokens: queries and the user JSON (§2, §7).

A user is handled as its ``users`` row (:class:`~apitask_auth.storage.rows.User`,
a ``TypedDict``); functions take the
caller's connection so a flow's writes (and, in outbox mode, its mail job)
share one transaction.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from apitask_auth.accounts.bodies import FactorBody, IdentityBody, UserBody
from apitask_auth.accounts.factors import list_factors
from apitask_auth.errors import APIError, ErrorCode
from apitask_auth.storage.db import BACKENDS, backend, upsert
from apitask_auth.storage.rows import Factor, Identity, User, identity_row, user_row
from apitask_auth.storage.tables import (
    NOT_SSO,
    identities,
    new_id,
    now,
    one_time_tokens,
    users,
    users_email_partial_key,
    users_phone_partial_key,
    verify_attempts,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.sql.expression import Executable

    from apitask_auth.storage.db import Backend

__all__ = [
    "TOKEN_COLUMNS",
    "AddressTakenError",
    "PhoneTakenError",
    "SentAtColumn",
    "User",
    "clear_one_time_token",
    "clear_one_time_tokens",
    "create_email_identity",
    "create_phone_identity",
    "confirm_email",
    "create_user",
    "find_token",
    "find_user_by_email",
    "find_user_by_phone",
    "find_user_by_phone_change",
    "get_user",
    "is_confirmed",
    "iso",
    "list_identities",
    "providers_metadata",
    "refuse_if_banned",
    "retry_if_taken",
    "sanitized_user",
    "set_email_identity",
    "set_phone_identity",
    "set_one_time_token",
    "update_user",
    "user_body",
    "factor_json",
    "user_json",
]

_T = TypeVar("_T")


class AddressTakenError(APIError):
    """The database refused a second account for an address (``users_email_partial_key``).

    Raised where a user row is written with an address another transaction holds:
    the look-up before the write saw nothing because the other transaction had not
    committed yet. Flows that create accounts run again through
    :func:`retry_if_taken` and then take their own existing-address path, so the
    loser of a race answers as GoTrue answers for an existing address; anywhere
    else it is GoTrue's answer to a taken address (422 ``email_exists``), never a 500.
    """

    def __init__(self) -> None:
        super().__init__(
            422,
            ErrorCode.EMAIL_EXISTS,
            "A user with this email address has already been registered",
        )


class PhoneTakenError(APIError):
    """The database refused a second account for a number (``users_phone_partial_key``).

    The phone counterpart of :class:`AddressTakenError`: a sign-up that lost a
    race runs again through :func:`retry_if_taken`; a phone change that lost
    one is GoTrue's answer to a taken number (422 ``phone_exists``).
    """

    def __init__(self) -> None:
        super().__init__(
            422, ErrorCode.PHONE_EXISTS, "Phone number already registered by another user"
        )


async def retry_if_taken(attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``attempt`` (one whole transaction); once more if it lost a race for an address.

    The second run starts after the winner committed, so its look-up finds the
    account and the flow answers as it does for any existing address.
    """
    try:
        return await attempt()
    except (AddressTakenError, PhoneTakenError):
        return await attempt()


# The users columns recording when a token mail was last sent.
SentAtColumn = Literal[
    "confirmation_sent_at",
    "recovery_sent_at",
    "email_change_sent_at",
    "reauthentication_sent_at",
    "phone_change_sent_at",
]

# one_time_tokens.token_type -> the users column holding the same token.
TOKEN_COLUMNS = {
    "confirmation_token": "confirmation_token",
    "recovery_token": "recovery_token",
    "reauthentication_token": "reauthentication_token",
    "email_change_token_new": "email_change_token_new",
    "email_change_token_current": "email_change_token_current",
    "phone_change_token": "phone_change_token",
}


def is_confirmed(user: User) -> bool:
    """Whether the user's address has been confirmed."""
    return user["email_confirmed_at"] is not None


def refuse_if_banned(
    user: User, status: Literal[400, 403], message: str = "User is banned"
) -> None:
    """Raise GoTrue's ``user_banned`` while an admin's ban holds.

    The one place that reads ``banned_until`` (GoTrue's ``IsBanned``: a ban ends
    at that instant). ``status`` and ``message`` are the route's, as GoTrue
    answers them: 400 on the token grants (password, refresh), 403 on a bearer
    token and on ``/verify``; "User is banned" everywhere but the refresh
    grant's "Invalid Refresh Token: User Banned". Where a flow must not tell
    which accounts exist, its caller asks only once the secret (password,
    code) has proved right, so that a banned account answers a wrong one
    exactly as an unknown account does.
    """
    if user["banned_until"] is not None and user["banned_until"] > now():
        raise APIError(status, ErrorCode.USER_BANNED, message)


@overload
def iso(value: datetime) -> str: ...
@overload
def iso(value: datetime | None) -> str | None: ...
def iso(value: datetime | None) -> str | None:
    """RFC 3339 with fractional seconds, as GoTrue writes timestamps."""
    if value is None:
        return None
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


async def get_user(conn: AsyncConnection, user_id: str) -> User | None:
    """The user with this id, or None."""
    row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return user_row(row) if row is not None else None


# The statements of the mail flows' hot path, built once: a request then pays only
# for its parameters (building a statement costs more than running it on SQLite).
# The look-up by address repeats users_email_partial_key's expressions, and has no
# ORDER BY: the index holds at most one row per address, and PostgreSQL keeps no
# statistics on a partial index's expression, so with "ORDER BY created_at LIMIT 1"
# it walked users_aud_created_at_idx backwards through the whole audience (852 ms at
# 1M users) instead of reading the one entry.
_BY_PHONE = (
    select(users)
    .where(users.c.phone == bindparam("phone"))
    .where(users.c.aud == bindparam("aud"))
    .where(NOT_SSO)
    .limit(1)
)
_BY_EMAIL = (
    select(users)
    .where(func.lower(users.c.email) == bindparam("email"))
    .where(users.c.aud == bindparam("aud"))
    .where(NOT_SSO)
    .limit(1)
)
# The SET clause is the parameters' other keys (``updated_at`` and the columns given).
_UPDATE = update(users).where(users.c.id == bindparam("user_id_")).returning(*users.c)


def _user_insert(on: Backend) -> Executable:
    # The unique address index decides: a row another transaction holds (committed
    # after our look-up) makes this insert a no-op with no row returned, without
    # aborting our transaction or logging a failed statement on the server.
    return (
        upsert(on, users)
        .on_conflict_do_nothing(
            index_elements=[func.lower(users.c.email), users.c.aud], index_where=NOT_SSO
        )
        .returning(users.c.id)
    )


_USER_INSERT = {on: _user_insert(on) for on in BACKENDS}


def _phone_user_insert(on: Backend) -> Executable:
    # As _user_insert, decided by the unique number index (a phone user has no address).
    return (
        upsert(on, users)
        .on_conflict_do_nothing(index_elements=[users.c.phone, users.c.aud], index_where=NOT_SSO)
        .returning(users.c.id)
    )


_PHONE_USER_INSERT = {on: _phone_user_insert(on) for on in BACKENDS}


def _taken_error(exc: IntegrityError) -> APIError | None:
    # PostgreSQL names the index in its message, SQLite as "index '<name>'"; SQLite's
    # "UNIQUE constraint failed: users.phone, users.aud" names the columns.
    message = str(exc.orig)
    if str(users_email_partial_key.name) in message:
        return AddressTakenError()
    if str(users_phone_partial_key.name) in message or "users.phone, users.aud" in message:
        return PhoneTakenError()
    return None


def _token_upsert(on: Backend) -> Executable:
    # One upsert on the (user_id, token_type) key instead of DELETE then INSERT: the row
    # is replaced whole (a new id and creation time, as GoTrue's delete-and-insert gives).
    row = upsert(on, one_time_tokens)
    replaced = ("id", "token_hash", "relates_to", "created_at", "updated_at")
    return row.on_conflict_do_update(
        index_elements=[one_time_tokens.c.user_id, one_time_tokens.c.token_type],
        set_={name: row.excluded[name] for name in replaced},
    )


_TOKEN_UPSERT = {on: _token_upsert(on) for on in BACKENDS}
# A new code, or one proven right, starts its tries afresh (attempts.py).
_RESET_ATTEMPTS = (
    delete(verify_attempts)
    .where(verify_attempts.c.user_id == bindparam("user_id"))
    .where(verify_attempts.c.token_type == bindparam("token_type"))
)


async def find_user_by_email(conn: AsyncConnection, email: str, aud: str) -> User | None:
    """The (non-SSO) user of audience ``aud`` with this address, compared lowercased."""
    row = (await conn.execute(_BY_EMAIL, {"email": email.lower(), "aud": aud})).first()
    return user_row(row) if row is not None else None


async def find_user_by_phone(conn: AsyncConnection, phone: str, aud: str) -> User | None:
    """The (non-SSO) user of audience ``aud`` with this number (stored form, no ``+``)."""
    row = (await conn.execute(_BY_PHONE, {"phone": phone, "aud": aud})).first()
    return user_row(row) if row is not None else None


async def find_user_by_phone_change(conn: AsyncConnection, phone: str, aud: str) -> User | None:
    """The user of audience ``aud`` changing to this number (GoTrue's
    ``FindUserByPhoneChangeAndAudience``); the newest if several asked for it."""
    row = (
        await conn.execute(
            select(users)
            .where(users.c.phone_change == phone, users.c.aud == aud, NOT_SSO)
            .order_by(users.c.phone_change_sent_at.desc())
            .limit(1)
        )
    ).first()
    return user_row(row) if row is not None else None


async def create_user(
    conn: AsyncConnection,
    *,
    email: str | None,
    aud: str,
    role: str,
    encrypted_password: str | None,
    user_metadata: dict[str, Any],
    app_metadata: dict[str, Any] | None = None,
    user_id: str | None = None,
    confirmed: bool = False,
    anonymous: bool = False,
    phone: str | None = None,
) -> User:
    """Insert a user (and its e-mail or phone identity) and return it.

    A ``phone`` user (no address) gets a ``phone`` identity and ``phone`` as
    its provider, as GoTrue's phone sign-up does. An ``anonymous`` user has no
    address, no identity and, as in GoTrue, an empty ``app_metadata``: its
    providers come with its first identity (:func:`providers_metadata`).

    Raises:
        AddressTakenError: another transaction holds an account with this address.
        PhoneTakenError: another transaction holds an account with this number.
    """
    at = now()
    # GoTrue's order: the address's provider first (an admin may give both).
    providers = [name for name, given in (("email", email), ("phone", phone)) if given]
    provider = providers[0] if providers else "email"
    values: dict[str, Any] = {
        "id": user_id or new_id(),
        "aud": aud,
        "role": role,
        "email": email,
        "encrypted_password": encrypted_password,
        "raw_app_meta_data": {}
        if anonymous
        else {"provider": provider, "providers": providers or [provider]} | (app_metadata or {}),
        "raw_user_meta_data": dict(user_metadata),
        "email_confirmed_at": at if confirmed and email else None,
        "phone": phone,
        "phone_confirmed_at": at if confirmed and phone else None,
        "email_change_confirm_status": 0,
        "is_anonymous": anonymous,
        "is_sso_user": False,
        "created_at": at,
        "updated_at": at,
    }
    insert = _PHONE_USER_INSERT if provider == "phone" else _USER_INSERT
    try:
        inserted = (await conn.execute(insert[backend(conn)], values)).first()
    except IntegrityError as exc:  # an address and a number: the number's index refused it
        taken = _taken_error(exc)
        if taken is None:
            raise
        raise taken from exc
    if inserted is None:
        raise PhoneTakenError if provider == "phone" else AddressTakenError
    if email:
        await create_email_identity(conn, values["id"], email, user_metadata, verified=confirmed)
    if phone:
        await create_phone_identity(conn, values["id"], phone, user_metadata, verified=confirmed)
    user = await get_user(conn, values["id"])
    assert user is not None
    return user


async def create_email_identity(
    conn: AsyncConnection,
    user_id: str,
    email: str,
    data: dict[str, Any],
    *,
    verified: bool,
) -> None:
    """The ``email`` identity: provider id = user id, identity data as GoTrue builds it."""
    claims = {"sub": user_id, "email": email, "email_verified": verified, "phone_verified": False}
    await _create_identity(conn, user_id, "email", claims, data, email=email)


async def create_phone_identity(
    conn: AsyncConnection,
    user_id: str,
    phone: str,
    data: dict[str, Any],
    *,
    verified: bool,
) -> None:
    """The ``phone`` identity: provider id = user id; ``identity_data`` is
    ``{sub, phone, email_verified, phone_verified}`` plus the sign-up's ``data``."""
    claims = {"sub": user_id, "phone": phone, "email_verified": False, "phone_verified": verified}
    await _create_identity(conn, user_id, "phone", claims, data)


async def _create_identity(
    conn: AsyncConnection,
    user_id: str,
    provider: str,
    claims: dict[str, Any],
    data: dict[str, Any],
    *,
    email: str | None = None,
) -> None:
    """Insert an identity whose data is ``claims`` plus the ``data`` keys it lacks."""
    at = now()
    identity_data = dict(claims)
    for key, value in data.items():
        identity_data.setdefault(key, value)
    await conn.execute(
        identities.insert().values(
            id=new_id(),
            provider_id=user_id,
            user_id=user_id,
            identity_data=identity_data,
            provider=provider,
            email=email,
            created_at=at,
            updated_at=at,
        )
    )


async def update_user(conn: AsyncConnection, user_id: str, **values: Any) -> User:
    """Set columns of a user (``updated_at`` too) and return the fresh row."""
    # RETURNING (SQLite >= 3.35, PostgreSQL) spares the re-read: one statement, not two.
    params = {"updated_at": now(), **values, "user_id_": user_id}
    try:
        return user_row((await conn.execute(_UPDATE, params)).one())
    except IntegrityError as exc:  # a new address or number another account took meanwhile
        taken = _taken_error(exc)
        if taken is not None:
            raise taken from exc
        raise


async def providers_metadata(conn: AsyncConnection, user: User) -> dict[str, Any]:
    """The user's ``app_metadata`` with ``providers`` (and ``provider``, the first)
    read from its identities, as GoTrue refreshes them once an identity is added."""
    found = await list_identities(conn, user["id"])
    providers = list(dict.fromkeys(identity["provider"] for identity in found))
    metadata = dict(user["raw_app_meta_data"]) | {"providers": providers}
    if providers:
        metadata["provider"] = providers[0]
    return metadata


async def list_identities(conn: AsyncConnection, user_id: str) -> list[Identity]:
    """The user's identities, oldest first."""
    rows = await conn.execute(
        select(identities).where(identities.c.user_id == user_id).order_by(identities.c.created_at)
    )
    return [identity_row(row) for row in rows]


async def set_one_time_token(
    conn: AsyncConnection,
    user: User,
    token_type: str,
    stored_token: str,
    relates_to: str,
    *,
    sent_at_column: SentAtColumn,
) -> User:
    """Store a token on the user's column and as its one row of that type (§2)."""
    at = now()
    # Rows are locked in one order everywhere: verify_attempts, one_time_tokens, users.
    await conn.execute(_RESET_ATTEMPTS, {"user_id": user["id"], "token_type": token_type})
    await conn.execute(
        _TOKEN_UPSERT[backend(conn)],
        {
            "id": new_id(),
            "user_id": user["id"],
            "token_type": token_type,
            "token_hash": stored_token,
            "relates_to": relates_to.lower(),
            "created_at": at,
            "updated_at": at,
        },
    )
    return await update_user(
        conn, user["id"], **{TOKEN_COLUMNS[token_type]: stored_token, sent_at_column: at}
    )


async def find_token(
    conn: AsyncConnection,
    token_types: list[str],
    stored_tokens: list[str],
    user_ids: list[str] | None = None,
) -> tuple[User, str] | None:
    """The user owning one of ``stored_tokens`` as one of ``token_types``, in type order
    (only among ``user_ids`` when given)."""
    query = select(one_time_tokens.c.user_id, one_time_tokens.c.token_type).where(
        one_time_tokens.c.token_type.in_(token_types),
        one_time_tokens.c.token_hash.in_(stored_tokens),
    )
    if user_ids is not None:
        query = query.where(one_time_tokens.c.user_id.in_(user_ids))
    rows = (await conn.execute(query)).all()
    for token_type in token_types:
        for row in rows:
            if row.token_type == token_type:
                user = await get_user(conn, row.user_id)
                if user is not None:
                    return user, token_type
    return None


async def clear_one_time_token(conn: AsyncConnection, user_id: str, token_type: str) -> None:
    """Drop one of a user's one-time tokens, on its column and its row (spent or replaced:
    its count of tries goes too)."""
    await conn.execute(_RESET_ATTEMPTS, {"user_id": user_id, "token_type": token_type})
    await conn.execute(
        delete(one_time_tokens)
        .where(one_time_tokens.c.user_id == user_id)
        .where(one_time_tokens.c.token_type == token_type)
    )
    await update_user(conn, user_id, **{TOKEN_COLUMNS[token_type]: None})


async def set_email_identity(
    conn: AsyncConnection, user: User, email: str, *, verified: bool
) -> None:
    """Point the user's ``email`` identity at ``email`` (creating it if missing)."""
    row = (
        await conn.execute(
            select(identities).where(
                identities.c.user_id == user["id"], identities.c.provider == "email"
            )
        )
    ).first()
    if row is None:
        await create_email_identity(conn, user["id"], email, {}, verified=verified)
        return
    data = dict(row.identity_data) | {"email": email, "email_verified": verified}
    await conn.execute(
        identities.update()
        .where(identities.c.id == row.id)
        .values(identity_data=data, email=email, updated_at=now())
    )


async def set_phone_identity(
    conn: AsyncConnection, user: User, phone: str, *, verified: bool
) -> None:
    """Point the user's ``phone`` identity at ``phone`` (creating it, ``phone_verified``
    as ``verified``, if missing), as GoTrue does when a number is set or changed."""
    row = (
        await conn.execute(
            identities.select().where(
                identities.c.user_id == user["id"], identities.c.provider == "phone"
            )
        )
    ).first()
    if row is None:
        await create_phone_identity(conn, user["id"], phone, {}, verified=verified)
        return
    data = dict(row.identity_data) | {"phone": phone}
    await conn.execute(
        identities.update()
        .where(identities.c.id == row.id)
        .values(identity_data=data, updated_at=now())
    )


async def clear_one_time_tokens(conn: AsyncConnection, user_id: str) -> None:
    """Drop all of a user's one-time tokens (after a confirmation or recovery), and their
    counts of tries."""
    await conn.execute(delete(verify_attempts).where(verify_attempts.c.user_id == user_id))
    await conn.execute(delete(one_time_tokens).where(one_time_tokens.c.user_id == user_id))


async def confirm_email(conn: AsyncConnection, user: User) -> User:
    """Mark the address confirmed, in the user and in its e-mail identity."""
    at = now()
    metadata = dict(user["raw_user_meta_data"]) | {"email_verified": True}
    rows = await conn.execute(
        select(identities).where(
            identities.c.user_id == user["id"], identities.c.provider == "email"
        )
    )
    for row in rows.all():
        data = dict(row.identity_data) | {"email_verified": True}
        await conn.execute(
            identities.update()
            .where(identities.c.id == row.id)
            .values(identity_data=data, updated_at=at)
        )
    return await update_user(
        conn,
        user["id"],
        email_confirmed_at=user["email_confirmed_at"] or at,
        raw_user_meta_data=metadata,
        confirmation_token=None,
    )


def _identity_body(identity: Identity) -> IdentityBody:
    """One identity as the user JSON lists it."""
    return IdentityBody(
        identity_id=identity["id"],
        id=identity["provider_id"],
        user_id=identity["user_id"],
        identity_data=identity["identity_data"],
        provider=identity["provider"],
        last_sign_in_at=iso(identity["last_sign_in_at"]),
        created_at=iso(identity["created_at"]),
        updated_at=iso(identity["updated_at"]),
        email=identity["email"] or "",
    )


async def user_body(conn: AsyncConnection, user: User) -> UserBody:
    """The user JSON, with the user's identities and MFA factors loaded."""
    factors = [factor_json(row) for row in await list_factors(conn, user["id"])]
    return user_json(user, await list_identities(conn, user["id"]), factors)


def factor_json(factor: Factor) -> FactorBody:
    """GoTrue's factor JSON, from an ``mfa_factors`` row (never the secret)."""
    return FactorBody(
        id=factor["id"],
        created_at=iso(factor["created_at"]),
        updated_at=iso(factor["updated_at"]),
        status=factor["status"],
        friendly_name=factor["friendly_name"],
        factor_type=factor["factor_type"],
        phone=factor["phone"] or "",
        last_challenged_at=iso(factor["last_challenged_at"]),
    )


def sanitized_user(
    user: User, provider: str, identifier: str, aud: str, data: dict[str, Any]
) -> UserBody:
    """GoTrue's ``sanitizeUser``: the answer to a sign-up of a confirmed address or
    number (``identifier``, of ``provider``), which must not tell that it has an
    account (§3.1): a new id, no role, no identities, the request's data, the
    other identifier blanked; other fields leak through as in GoTrue."""
    at = now()
    fake: User = {
        **user,
        "id": new_id(),
        "role": "",
        "aud": aud,
        "email": identifier if provider == "email" else None,
        "phone": identifier if provider == "phone" else None,
        "created_at": at,
        "updated_at": at,
        "confirmation_sent_at": at,
        "email_confirmed_at": None,
        "phone_confirmed_at": None,
        "last_sign_in_at": None,
        "email_change_sent_at": None,
        "email_change": None,
        "raw_user_meta_data": data,
        "raw_app_meta_data": {"provider": provider, "providers": [provider]},
    }
    return user_json(fake, [])


def user_json(
    user: User, user_identities: list[Identity], factors: list[FactorBody] | None = None
) -> UserBody:
    """GoTrue's user JSON (§7): secrets never; empty optional fields are left out
    when the body is dumped (see :mod:`.bodies`)."""
    confirmed_candidates = [
        at for at in (user["email_confirmed_at"], user["phone_confirmed_at"]) if at is not None
    ]
    return UserBody(
        id=user["id"],
        aud=user["aud"],
        role=user["role"],
        email=user["email"] or "",
        phone=user["phone"] or "",
        email_confirmed_at=iso(user["email_confirmed_at"]),
        invited_at=iso(user["invited_at"]),
        phone_confirmed_at=iso(user["phone_confirmed_at"]),
        confirmation_sent_at=iso(user["confirmation_sent_at"]),
        confirmed_at=iso(min(confirmed_candidates)) if confirmed_candidates else None,
        recovery_sent_at=iso(user["recovery_sent_at"]),
        new_email=user["email_change"],
        email_change_sent_at=iso(user["email_change_sent_at"]),
        new_phone=user["phone_change"],
        phone_change_sent_at=iso(user["phone_change_sent_at"]),
        reauthentication_sent_at=iso(user["reauthentication_sent_at"]),
        last_sign_in_at=iso(user["last_sign_in_at"]),
        app_metadata=user["raw_app_meta_data"],
        user_metadata=user["raw_user_meta_data"],
        identities=[_identity_body(identity) for identity in user_identities],
        factors=factors,
        created_at=iso(user["created_at"]),
        updated_at=iso(user["updated_at"]),
        banned_until=iso(user["banned_until"]),
        deleted_at=iso(user["deleted_at"]),
        is_anonymous=bool(user["is_anonymous"]),
    )
