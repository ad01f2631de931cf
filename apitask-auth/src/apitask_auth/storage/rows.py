"""The rows the service passes around, typed column by column.

A row read with SQLAlchemy Core is a ``Row`` whose attributes mypy cannot
check; the functions here turn one into the ``TypedDict`` of its table, the
one place per table where that happens, so ``user["emial"]`` is a type error
everywhere after. Each ``TypedDict`` lists every column of its table in
:mod:`.tables`, ``| None`` where the column is nullable; a test
(tests/service/test_rows.py) keeps the two in step.

Rows read and used in one function (``refresh_tokens``, ``one_time_tokens``)
stay SQLAlchemy rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import Row

__all__ = [
    "Factor",
    "FlowState",
    "Identity",
    "Session",
    "User",
    "factor_row",
    "flow_state_row",
    "identity_row",
    "session_row",
    "user_row",
]


class User(TypedDict):
    """A ``users`` row."""

    id: str
    aud: str
    role: str
    email: str | None
    encrypted_password: str | None
    email_confirmed_at: datetime | None
    invited_at: datetime | None
    confirmation_token: str | None
    confirmation_sent_at: datetime | None
    recovery_token: str | None
    recovery_sent_at: datetime | None
    email_change_token_new: str | None
    email_change: str | None
    email_change_sent_at: datetime | None
    email_change_token_current: str | None
    email_change_confirm_status: int
    reauthentication_token: str | None
    reauthentication_sent_at: datetime | None
    last_sign_in_at: datetime | None
    raw_app_meta_data: dict[str, Any]
    raw_user_meta_data: dict[str, Any]
    phone: str | None
    phone_confirmed_at: datetime | None
    banned_until: datetime | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    is_anonymous: bool
    is_sso_user: bool
    phone_change: str | None
    phone_change_token: str | None
    phone_change_sent_at: datetime | None


class Identity(TypedDict):
    """An ``identities`` row (``provider_id`` is the user id for the ``email`` provider)."""

    id: str
    provider_id: str
    user_id: str
    identity_data: dict[str, Any]
    provider: str
    email: str | None
    last_sign_in_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Session(TypedDict):
    """A ``sessions`` row."""

    id: str
    user_id: str
    aal: str
    # [{"method": ..., "timestamp": ...}], newest first (GoTrue's mfa_amr_claims).
    amr: list[dict[str, Any]]
    not_after: datetime | None
    refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    factor_id: str | None


class Factor(TypedDict):
    """An ``mfa_factors`` row (``secret``: a TOTP factor's; never sent to a client)."""

    id: str
    user_id: str
    friendly_name: str
    factor_type: str
    status: str
    secret: str
    phone: str | None
    last_challenged_at: datetime | None
    created_at: datetime
    updated_at: datetime


class FlowState(TypedDict):
    """A ``flow_state`` row (a PKCE flow waiting for its code exchange)."""

    id: str
    user_id: str | None
    auth_code: str
    code_challenge_method: str
    code_challenge: str
    provider_type: str
    authentication_method: str
    auth_code_issued_at: datetime | None
    created_at: datetime
    updated_at: datetime


# The casts are the checks' one gap: a row of ``select(table)`` has the table's
# columns by construction, and the test compares each TypedDict with its table.


def user_row(row: Row[Any]) -> User:
    """The ``User`` of a row of ``select(users)``."""
    return cast("User", dict(row._mapping))


def identity_row(row: Row[Any]) -> Identity:
    """The ``Identity`` of a row of ``select(identities)``."""
    return cast("Identity", dict(row._mapping))


def session_row(row: Row[Any]) -> Session:
    """The ``Session`` of a row of ``select(sessions)``."""
    return cast("Session", dict(row._mapping))


def flow_state_row(row: Row[Any]) -> FlowState:
    """The ``FlowState`` of a row of ``select(flow_state)``."""
    return cast("FlowState", dict(row._mapping))


def factor_row(row: Row[Any]) -> Factor:
    """The ``Factor`` of a row of ``select(mfa_factors)``."""
    return cast("Factor", dict(row._mapping))
