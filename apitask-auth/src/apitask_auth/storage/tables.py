"""The tables: GoTrue's ``auth`` schema for the e-mail flows, as SQLAlchemy Core.

Tables mirror GoTrue's ``auth`` schema for the e-mail flows (users, identities,
one_time_tokens, sessions, refresh_tokens, flow_state, audit_log_entries);
SQLAlchemy Core keeps one definition for both backends. These are the live
definitions: :mod:`.migrations` brings a database to them, step by step.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    text,
)

if TYPE_CHECKING:
    from sqlalchemy import Dialect

__all__ = [
    "NOT_SSO",
    "STALE_ROW_INDEXES",
    "UTCDateTime",
    "audit_log_entries",
    "email_rate_limits",
    "flow_state",
    "identities",
    "metadata",
    "mfa_challenges",
    "mfa_factors",
    "new_id",
    "now",
    "one_time_tokens",
    "refresh_tokens",
    "refresh_tokens_parent_idx",
    "sessions",
    "sessions_factor_id_idx",
    "users",
    "users_aud_created_at_idx",
    "users_email_partial_key",
    "users_phone_change_idx",
    "users_phone_partial_key",
    "verify_attempts",
]


def now() -> datetime:
    """The current time, aware, in UTC (every stored timestamp is)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh UUID (v4) as text, the form every id column stores."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back aware, in UTC (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(name: str, **kwargs: Any) -> Column[datetime]:
    return Column(name, UTCDateTime(), **kwargs)


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
    # A pending phone change (migration 6, which adds them last): the new number,
    # its code's hash, when it was sent.
    Column("phone_change", String(32)),
    Column("phone_change_token", String(255)),
    _ts("phone_change_sent_at"),
)

# One account per address (migration 3). GoTrue's users_email_partial_key, scoped
# as our look-ups are: the address compared lowercased, within one audience, among
# non-SSO users. The same expressions as find_user_by_email's filter, so the
# look-up is this index (a partial index serves a query only when the query's
# WHERE repeats the index's: ``is_sso_user = false`` literally, on both databases).
NOT_SSO = users.c.is_sso_user == false()
users_email_partial_key = Index(
    "users_email_partial_key",
    func.lower(users.c.email),
    users.c.aud,
    unique=True,
    postgresql_where=NOT_SSO,
    sqlite_where=NOT_SSO,
)
# One account per number (migration 6), scoped as the address is: GoTrue's
# users_phone_key, within one audience, among non-SSO users. It is also the
# look-up by number (find_user_by_phone repeats its WHERE).
users_phone_partial_key = Index(
    "users_phone_partial_key",
    users.c.phone,
    users.c.aud,
    unique=True,
    postgresql_where=NOT_SSO,
    sqlite_where=NOT_SSO,
)
# POST /verify {type: "phone_change"}: the user whose pending number this is.
users_phone_change_idx = Index("users_phone_change_idx", users.c.phone_change)
# GET /admin/users: one audience, newest first (the ORDER BY, column for column).
users_aud_created_at_idx = Index(
    "users_aud_created_at_idx", users.c.aud, users.c.created_at.desc(), users.c.id
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
    # The MFA factor that raised the session to aal2 (migration 5): unenrolling it
    # lowers the session again (GoTrue's sessions.factor_id).
    Column("factor_id", String(36)),
    Index("sessions_user_id_idx", "user_id"),
)
# The sessions an unenrolled factor had raised (migration 5).
sessions_factor_id_idx = Index("sessions_factor_id_idx", sessions.c.factor_id)

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
# The child of a revoked token (reuse detection; migration 3).
refresh_tokens_parent_idx = Index("refresh_tokens_parent_idx", refresh_tokens.c.parent)

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

# MFA (migration 5): GoTrue's mfa_factors and mfa_challenges. A TOTP factor keeps its
# base32 secret (the code is computed from it, so it cannot be hashed); a phone
# factor its E.164 number without "+". Status is "unverified" until a first verify.
mfa_factors = Table(
    "mfa_factors",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("friendly_name", Text, nullable=False, default=""),
    Column("factor_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("secret", Text, nullable=False, default=""),
    Column("phone", String(32)),
    _ts("last_challenged_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    Index("mfa_factors_user_id_idx", "user_id"),
)

# One row per challenge; ``otp_code`` is the keyed hash of a phone challenge's code
# (security.token_hash), empty for TOTP. ``verified_at`` set: spent (its hash blanked).
mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "factor_id", String(36), ForeignKey("mfa_factors.id", ondelete="CASCADE"), nullable=False
    ),
    Column("ip_address", String(64), nullable=False),
    Column("otp_code", Text, nullable=False, default=""),
    _ts("verified_at"),
    _ts("created_at", nullable=False),
    Index("mfa_challenges_factor_id_idx", "factor_id"),
)

# The global send limits (GOTRUE_RATE_LIMIT_EMAIL_SENT, GOTRUE_RATE_LIMIT_SMS_SENT)
# as one row per allowance and mode (http/ratelimit.py names them), so every
# process on the database draws from the same allowance. Times are
# Unix seconds as floats: the same arithmetic on SQLite and PostgreSQL.
email_rate_limits = Table(
    "email_rate_limits",
    metadata,
    Column("name", String(32), primary_key=True),
    # fixed window: the window's number (seconds // interval) and the mails sent in it
    Column("window_id", BigInteger, nullable=False, default=0),
    # token bucket: the tokens left at updated_at
    Column("amount", Float, nullable=False, default=0),
    Column("updated_at", Float, nullable=False, default=0),
)

# Tries of each user's mailed code, by one_time_tokens.token_type (attempts.py):
# counted when a try starts, dropped when a code is sent or proven right. An MFA
# factor's tries share the table as token_type "mfa:<factor id>" (accounts/mfa.py:
# dropped when proven right, with the factor, or after a challenge's lifetime idle).
verify_attempts = Table(
    "verify_attempts",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("token_type", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    _ts("updated_at", nullable=False),
)


# Under the stale-row cleanup (migration 7; storage/stale_rows.py): each of its
# statements finds its rows by one of these, never by reading the table. The
# partial ones index only the rows a statement looks for (most refresh tokens
# are live; only a timeboxed session has a not_after), and a query uses a
# partial index only when its WHERE repeats the index's, so the statements
# repeat these texts.
REVOKED = {"postgresql": "revoked = true", "sqlite": "revoked = 1"}
UNVERIFIED = "status = 'unverified'"
STALE_ROW_INDEXES = (
    Index(
        "refresh_tokens_revoked_updated_at_idx",
        refresh_tokens.c.updated_at,
        postgresql_where=text(REVOKED["postgresql"]),
        sqlite_where=text(REVOKED["sqlite"]),
    ),
    Index(
        "sessions_not_after_idx",
        sessions.c.not_after,
        postgresql_where=sessions.c.not_after.is_not(None),
        sqlite_where=sessions.c.not_after.is_not(None),
    ),
    Index("flow_state_created_at_idx", flow_state.c.created_at),
    Index("mfa_challenges_created_at_idx", mfa_challenges.c.created_at),
    Index(
        "mfa_factors_unverified_created_at_idx",
        mfa_factors.c.created_at,
        postgresql_where=text(UNVERIFIED),
        sqlite_where=text(UNVERIFIED),
    ),
    Index("verify_attempts_updated_at_idx", verify_attempts.c.updated_at),
    Index("one_time_tokens_updated_at_idx", one_time_tokens.c.updated_at),
)
