"""MFA factors as stored: found for a request, listed for the user JSON.

Their JSON is :func:`apitask_auth.accounts.users.factor_json`; the rules that
change them (enrol, challenge, verify, unenrol) are in :mod:`.mfa`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select

from apitask_auth.errors import APIError, ErrorCode, not_found
from apitask_auth.storage.rows import Factor, factor_row
from apitask_auth.storage.tables import mfa_factors

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = [
    "SIGN_IN_METHOD",
    "factor_not_found",
    "find_factor",
    "list_factors",
]

# The amr method a verified factor of each type adds to its session (GoTrue's
# TOTPSignIn and MFAPhone).
SIGN_IN_METHOD = {"totp": "totp", "phone": "mfa/phone"}


async def list_factors(conn: AsyncConnection, user_id: str) -> list[Factor]:
    """The user's factors, oldest first."""
    query = (
        select(mfa_factors)
        .where(mfa_factors.c.user_id == user_id)
        .order_by(mfa_factors.c.created_at, mfa_factors.c.id)
    )
    return [factor_row(row) for row in await conn.execute(query)]


def factor_not_found() -> APIError:
    """GoTrue's answer for a factor that is not the user's (or not anyone's)."""
    return not_found(ErrorCode.MFA_FACTOR_NOT_FOUND, "Factor not found")


async def find_factor(
    conn: AsyncConnection, user_id: str, factor_id: str, *, lock: bool = False
) -> Factor:
    """The user's factor ``factor_id`` (GoTrue's loadFactor).

    Raises:
        APIError: 404 ``validation_failed`` for an id that is not a UUID,
            404 ``mfa_factor_not_found`` for one that is not the user's factor.
    """
    try:
        uuid.UUID(factor_id)
    except ValueError:
        raise not_found(ErrorCode.VALIDATION_FAILED, "factor_id must be an UUID") from None
    query = select(mfa_factors).where(mfa_factors.c.id == factor_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None or row.user_id != user_id:
        raise factor_not_found()
    return factor_row(row)
