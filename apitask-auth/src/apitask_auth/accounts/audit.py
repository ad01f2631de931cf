"""GoTrue's audit log: one ``audit_log_entries`` row per security-relevant action.

Written in the flow's own transaction, so an entry exists exactly when the
change it records was committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apitask_auth.storage.tables import audit_log_entries, new_id, now

if TYPE_CHECKING:
    from fastapi import Request
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["audit"]

_INSERT = audit_log_entries.insert()  # built once; each entry is its parameters

# action -> GoTrue's log_type
_LOG_TYPES = {
    "login": "account",
    "logout": "account",
    "user_signedup": "team",
    "user_invited": "team",
    "user_deleted": "team",
    "user_modified": "user",
    "user_confirmation_requested": "user",
    "user_recovery_requested": "user",
    "user_reauthenticate_requested": "user",
    "user_updated_password": "user",
    "token_refreshed": "token",
    "token_revoked": "token",
    # MFA (GoTrue's factor actions)
    "factor_in_progress": "factor",
    "factor_unenrolled": "factor",
    "challenge_created": "factor",
    "verification_attempted": "factor",
    "factor_deleted": "factor",
    "factor_updated": "factor",
}


async def audit(
    conn: AsyncConnection,
    request: Request,
    actor_id: str,
    actor_username: str,
    action: str,
    traits: dict[str, Any] | None = None,
) -> None:
    """Record ``action`` by the actor (a user, or an admin role's name)."""
    payload: dict[str, Any] = {
        "actor_id": actor_id,
        "actor_username": actor_username,
        "actor_via_sso": False,
        "log_type": _LOG_TYPES[action],
        "action": action,
    }
    if traits:
        payload["traits"] = traits
    row = {
        "id": new_id(),
        "payload": payload,
        "ip_address": request.client.host if request.client else "",
        "created_at": now(),
    }
    await conn.execute(_INSERT, row)
