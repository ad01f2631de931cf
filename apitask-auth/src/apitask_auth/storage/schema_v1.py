"""The schema as migration 1 shipped it, frozen: migration 1 creates exactly this.

The live table definitions in :mod:`apitask_auth.storage.tables` move on with later
migrations (new indexes, new columns); a database created today must still
pass through the same steps as one created when version 1 was released, so
step 1 builds from this copy, never from the live metadata. Never edit it.
Types are the DDL only (``DateTime(timezone=True)`` is what ``UTCDateTime``
emits).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

__all__ = ["create_v1_schema"]


def _ts(name: str, **kwargs: Any) -> Column[Any]:
    return Column(name, DateTime(timezone=True), **kwargs)


metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("aud", String(255), nullable=False, default=""),
    Column("role", String(255), nullable=False, default=""),
    Column("email", String(255)),
    Column("encrypted_password", String(255)),
    _ts("email_confirmed_at"),
    _ts("invited_at"),
    Column("confirmation_token", String(255)),
    _ts("confirmation_sent_at"),
    Column("recovery_token", String(255)),
    _ts("recovery_sent_at"),
    Column("email_change_token_new", String(255)),
    Column("email_change", String(255)),
    _ts("email_change_sent_at"),
    Column("email_change_token_current", String(255)),
    Column("email_change_confirm_status", SmallInteger, nullable=False, default=0),
    Column("reauthentication_token", String(255)),
    _ts("reauthentication_sent_at"),
    _ts("last_sign_in_at"),
    Column("raw_app_meta_data", JSON, nullable=False),
    Column("raw_user_meta_data", JSON, nullable=False),
    Column("phone", String(32)),
    _ts("phone_confirmed_at"),
    _ts("banned_until"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    _ts("deleted_at"),
    Column("is_anonymous", Boolean, nullable=False, default=False),
    Column("is_sso_user", Boolean, nullable=False, default=False),
    Index("users_email_idx", "email"),
)

identities = Table(
    "identities",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("provider_id", Text, nullable=False),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("identity_data", JSON, nullable=False),
    Column("provider", String(255), nullable=False),
    Column("email", String(255)),
    _ts("last_sign_in_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("provider_id", "provider", name="identities_provider_id_provider_key"),
    Index("identities_user_id_idx", "user_id"),
    Index("identities_email_idx", "email"),
)

one_time_tokens = Table(
    "one_time_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_type", String(64), nullable=False),
    Column("token_hash", Text, nullable=False),
    Column("relates_to", Text, nullable=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    UniqueConstraint("user_id", "token_type", name="one_time_tokens_user_id_token_type_key"),
    Index("one_time_tokens_token_hash_idx", "token_hash"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("aal", String(8), nullable=False, default="aal1"),
    # GoTrue's mfa_amr_claims, kept inline: [{"method": ..., "timestamp": ...}], newest first.
    Column("amr", JSON, nullable=False),
    _ts("not_after"),
    _ts("refreshed_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index("sessions_user_id_idx", "user_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("token", String(255), nullable=False, unique=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", String(36), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("parent", String(255)),
    Column("revoked", Boolean, nullable=False, default=False),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index("refresh_tokens_session_id_idx", "session_id"),
)

flow_state = Table(
    "flow_state",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE")),
    Column("auth_code", String(36), nullable=False, unique=True),
    Column("code_challenge_method", String(8), nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("provider_type", String(64), nullable=False),
    Column("authentication_method", String(64), nullable=False),
    _ts("auth_code_issued_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index("flow_state_user_method_idx", "user_id", "authentication_method"),
)

audit_log_entries = Table(
    "audit_log_entries",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("payload", JSON, nullable=False),
    Column("ip_address", String(64), nullable=False, default=""),
    _ts("created_at", nullable=False),
)


def create_v1_schema(connection: Connection) -> None:
    """Create the tables (and their indexes) of schema version 1."""
    metadata.create_all(connection, checkfirst=False)
