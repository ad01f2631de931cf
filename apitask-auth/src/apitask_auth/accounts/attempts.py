"""How often one mailed code may be tried (``GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS``).

Ours, not GoTrue's: a six-digit code that lives a day is otherwise found by
trying them all. Each try of a user's code is counted in ``verify_attempts``,
by user and ``one_time_tokens.token_type``, *before* the code is compared:
one upsert that adds one and returns the new count, so concurrent tries are
numbered one by one and no more than the limit are ever compared, however
many arrive at once. A wrong try that uses up the last one drops the code (a
new one must be requested; its link dies too); a try numbered past the limit
is not compared, and its answer is the same as a wrong code's (403
``otp_expired``, or 422 for a re-authentication nonce). The count lives in the database, so it
holds across processes and restarts; sending a new code, or proving one right,
removes it (``users.set_one_time_token``, ``users.clear_one_time_token(s)``).
MFA counts a factor's tries here too (:mod:`.mfa`, token type ``mfa:<factor id>``).

The caller counts in the transaction that compares the code and must commit it
when the code is wrong (the count is the point): it falls through rather than
raise, or raises :class:`CountedRefusal` inside :func:`keeping_tries`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete

from apitask_auth.accounts.users import TOKEN_COLUMNS, update_user
from apitask_auth.errors import APIError
from apitask_auth.storage.db import BACKENDS, backend, upsert
from apitask_auth.storage.tables import now, one_time_tokens, verify_attempts

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
    from sqlalchemy.sql.expression import Executable

    from apitask_auth.storage.db import Backend

__all__ = [
    "CountedRefusal",
    "Tries",
    "count_try",
    "drop_spent",
    "forget_tries",
    "keeping_tries",
]


class CountedRefusal(APIError):
    """A wrong code's answer: the transaction that counted the try commits first."""


@asynccontextmanager
async def keeping_tries(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``engine.begin()``, except that a :class:`CountedRefusal` commits, then is raised.

    What the transaction wrote before the refusal is committed with the count:
    the code must be compared before the flow writes anything else.
    """
    refusal: CountedRefusal | None = None
    async with engine.connect() as conn, conn.begin():
        try:
            yield conn
        except CountedRefusal as raised:
            refusal = raised
    if refusal is not None:
        raise refusal


def _count_statement(on: Backend) -> Executable:
    row = upsert(on, verify_attempts)
    return row.on_conflict_do_update(
        index_elements=[verify_attempts.c.user_id, verify_attempts.c.token_type],
        set_={"failures": verify_attempts.c.failures + 1, "updated_at": row.excluded.updated_at},
    ).returning(verify_attempts.c.failures)


_COUNT = {on: _count_statement(on) for on in BACKENDS}
_DROP_TOKEN = (
    delete(one_time_tokens)
    .where(one_time_tokens.c.user_id == bindparam("user_id"))
    .where(one_time_tokens.c.token_type == bindparam("token_type"))
)


@dataclass(frozen=True, slots=True)
class Tries:
    """One try, counted: its number for each (user id, token type) it may match."""

    numbers: dict[tuple[str, str], int]
    limit: int

    def allowed(self, user_id: str, token_type: str) -> bool:
        """Whether this try may still be compared with that code."""
        return self.numbers[user_id, token_type] <= self.limit

    @property
    def spent(self) -> list[tuple[str, str]]:
        """The codes with no try left (this one, if wrong, was their last)."""
        return [key for key, number in self.numbers.items() if number >= self.limit]


async def count_try(
    conn: AsyncConnection, limit: int, user_ids: list[str], token_types: list[str]
) -> Tries:
    """Count one try against each of ``user_ids``' codes of ``token_types``.

    Codes already past the limit are dropped here, before anything is compared.
    """
    at = now()
    statement = _COUNT[backend(conn)]
    numbers: dict[tuple[str, str], int] = {}
    for user_id in user_ids:
        for token_type in token_types:
            counted = await conn.execute(
                statement,
                {"user_id": user_id, "token_type": token_type, "failures": 1, "updated_at": at},
            )
            numbers[user_id, token_type] = counted.scalar_one()
    tries = Tries(numbers, limit)
    await drop_spent(conn, [key for key in numbers if not tries.allowed(*key)])
    return tries


async def drop_spent(conn: AsyncConnection, codes: list[tuple[str, str]]) -> None:
    """Drop each (user id, token type) code that has no try left; its count stays."""
    for user_id, token_type in codes:
        dropped = await conn.execute(_DROP_TOKEN, {"user_id": user_id, "token_type": token_type})
        if dropped.rowcount:
            await update_user(conn, user_id, **{TOKEN_COLUMNS[token_type]: None})


async def forget_tries(conn: AsyncConnection, user_id: str, token_types: list[str]) -> None:
    """A right code ends the count of every code the try was compared with."""
    await conn.execute(
        delete(verify_attempts)
        .where(verify_attempts.c.user_id == user_id)
        .where(verify_attempts.c.token_type.in_(token_types))
    )
