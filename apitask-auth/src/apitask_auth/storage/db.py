"""Database: the schema, the engine for SQLite or PostgreSQL, versioned migrations.

Tables mirror GoTrue's ``auth`` schema for the e-mail flows (users, identities,
one_time_tokens, sessions, refresh_tokens, flow_state, audit_log_entries);
SQLAlchemy Core keeps one definition for both backends. Migrations are a list
of numbered steps recorded in ``schema_migrations``; ``apitask-auth migrate``
applies the missing ones (dev mode does it at start).
"""

from __future__ import annotations

import uuid
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

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
    event,
    false,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateIndex

# The outbox stores read their SQL files when imported: import them here, at
# start-up, rather than lazily from open_store() on the event loop.
import apitask.outbox.postgres
import apitask.outbox.sqlite  # noqa: F401
from apitask.outbox import Outbox, open_store
from apitask_auth.accounts import addresses
from apitask_auth.storage import pg_connect, schema_v1, sqlite_driver
from apitask_auth.storage.database_url import DatabaseURL, parse_database_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection, Dialect

__all__ = [
    "BACKENDS",
    "Backend",
    "MIGRATIONS",
    "audit_log_entries",
    "backend",
    "create_engine",
    "engine_like",
    "email_rate_limits",
    "flow_state",
    "identities",
    "metadata",
    "migrate",
    "migrate_all",
    "new_id",
    "now",
    "one_time_tokens",
    "refresh_tokens",
    "upsert",
    "schema_status",
    "schema_version",
    "sessions",
    "users",
    "verify_attempts",
]


def now() -> datetime:
    """The current time, aware, in UTC (every stored timestamp is)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh UUID (v4) as text, the form every id column stores."""
    return str(uuid.uuid4())


Backend = Literal["postgresql", "sqlite"]
BACKENDS: tuple[Backend, ...] = ("postgresql", "sqlite")


def backend(conn: AsyncConnection) -> Backend:
    """Which of the two databases ``conn`` talks to."""
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


def upsert(on: Backend, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that takes ON CONFLICT clauses, in the SQL of ``on``."""
    return postgresql.insert(table) if on == "postgresql" else sqlite.insert(table)


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

# The global e-mail limit (GOTRUE_RATE_LIMIT_EMAIL_SENT) as one row per mode,
# so every process on the database draws from the same allowance. Times are
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
# counted when a try starts, dropped when a code is sent or proven right.
verify_attempts = Table(
    "verify_attempts",
    metadata,
    Column("user_id", String(36), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("token_type", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    _ts("updated_at", nullable=False),
)

schema_migrations = Table(
    "schema_migrations",
    MetaData(),
    Column("version", Integer, primary_key=True),
    _ts("applied_at", nullable=False),
)


def _initial_schema(connection: Connection) -> None:
    # The tables exactly as version 1 shipped them (a frozen copy): the live
    # definitions above carry what later steps add.
    schema_v1.create_v1_schema(connection)


def _email_rate_limits(connection: Connection) -> None:
    email_rate_limits.create(connection, checkfirst=False)


def _verify_attempts(connection: Connection) -> None:
    verify_attempts.create(connection, checkfirst=False)


def _one_account_per_address(connection: Connection) -> None:
    """The unique address index, and an index under every other look-up that lacked one.

    Stops with DuplicateAddressesError (the transaction rolls back: nothing changes)
    when existing rows already break the rule; it never drops or rewrites data.
    """
    if connection.dialect.name == "postgresql":
        # Writers wait from the check until the commit, so the index sees the rows the
        # check saw. (CREATE INDEX CONCURRENTLY cannot run in a transaction; building
        # the indexes on 1M users inside one took 9-14 s: docs/service.md says how to
        # build the indexes concurrently beforehand.)
        connection.exec_driver_sql("LOCK TABLE users IN SHARE MODE")
    found = connection.execute(text(addresses.DUPLICATES)).all()
    if found:
        raise addresses.DuplicateAddressesError([tuple(row) for row in found])
    # Nothing compares the raw address any more: the expression index replaces it.
    connection.exec_driver_sql("DROP INDEX IF EXISTS users_email_idx")
    for index in (users_email_partial_key, users_aud_created_at_idx, refresh_tokens_parent_idx):
        # An index an operator built beforehand (CONCURRENTLY, docs/service.md) is kept.
        connection.execute(CreateIndex(index, if_not_exists=True))


# Append-only: a deployed step is never edited, later changes are new steps.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "initial schema", _initial_schema),
    (2, "global e-mail rate limit", _email_rate_limits),
    (3, "one account per address; an index under every look-up", _one_account_per_address),
    (4, "verify attempts per code", _verify_attempts),
]


# The database each PostgreSQL engine was made for, so another engine on it
# (engine_like) connects with the same arguments (sslmode...).
_databases: weakref.WeakKeyDictionary[AsyncEngine, DatabaseURL] = weakref.WeakKeyDictionary()


def engine_like(database: AsyncEngine | DatabaseURL, **options: Any) -> AsyncEngine:
    """An engine on a PostgreSQL database: the one a :func:`create_engine` engine
    uses, or a parsed ``DATABASE_URL``; ``options`` go to ``create_async_engine``."""
    parsed = database if isinstance(database, DatabaseURL) else _databases[database]
    timeout = {"timeout": parsed.connect_timeout} if parsed.connect_timeout else {}
    # engine.url without the query (for logs and reprs); asyncpg reads the whole DSN.
    url = make_url(parsed.url).set(drivername="postgresql+asyncpg", query={})
    # A server refusing connections for being full is waited out (pg_connect.py).
    engine = create_async_engine(
        url, async_creator=lambda: pg_connect.connect(parsed.url, **timeout), **options
    )
    _databases[engine] = parsed
    return engine


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for ``sqlite:///file`` (aiosqlite) or ``postgres://`` (asyncpg).

    PostgreSQL connections go through asyncpg's own DSN parser, so libpq's
    parameters (``?sslmode=disable``...) mean what they mean to GoTrue; see
    :mod:`apitask_auth.storage.database_url` for those accepted.

    SQLite gets WAL, foreign keys, a busy timeout, and ``BEGIN IMMEDIATE`` for
    every transaction, so two writers queue on the lock instead of one failing
    with "database is locked" when it upgrades a read lock.

    Raises:
        ValueError: ``database_url`` is not one the service can use.
    """
    parsed = parse_database_url(database_url)
    # hide_parameters: a failed statement's message (and so the log) must not
    # carry its parameters, which include addresses and token hashes.
    if parsed.backend == "postgresql":
        return engine_like(parsed, pool_pre_ping=True, hide_parameters=True)
    url = make_url(parsed.url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    database = url.database or ":memory:"
    engine = create_async_engine(
        url,
        hide_parameters=True,
        # One trip to the connection's thread per statement instead of aiosqlite's four;
        # the same sqlite3 arguments SQLAlchemy's aiosqlite dialect gives a file.
        async_creator=lambda: sqlite_driver.connect(database, timeout=30, check_same_thread=False),
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite_driver.OneTripConnection)
        # Sent with the transaction's first statement, in the same trip to the thread.
        driver.begin_with_next("BEGIN IMMEDIATE")

    return engine


async def schema_version(connection: AsyncConnection) -> int:
    """The highest applied migration (0 for an empty database)."""

    def _read(sync: Connection) -> int:
        schema_migrations.create(sync, checkfirst=True)
        versions = sync.execute(select(schema_migrations.c.version)).scalars().all()
        return max(versions, default=0)

    return await connection.run_sync(_read)


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every missing migration, each in the same transaction as its record.

    Returns:
        The versions applied now (empty when the schema was current).
    """
    applied: list[int] = []
    async with engine.begin() as connection:
        current = await schema_version(connection)
        for version, _name, step in MIGRATIONS:
            if version <= current:
                continue
            await connection.run_sync(step)
            await connection.execute(
                schema_migrations.insert().values(version=version, applied_at=now())
            )
            applied.append(version)
    return applied


async def schema_status(engine: AsyncEngine, database_url: str) -> dict[str, tuple[int, int]]:
    """How far each schema is migrated, read without writing anything.

    Returns:
        ``(applied, latest)`` versions by schema (``"auth"``, ``"outbox"``);
        0 applied for a schema never migrated.
    """

    def _read(sync: Connection) -> int:
        if not inspect(sync).has_table("schema_migrations"):
            return 0
        versions = sync.execute(text("SELECT version FROM schema_migrations")).scalars().all()
        return max(versions, default=0)

    async with engine.connect() as connection:
        auth = await connection.run_sync(_read)
    # The outbox's own store reads its migration record (the same database).
    async with Outbox(open_store(parse_database_url(database_url).url)) as outbox:
        outbox_status = await outbox.schema_status()
    return {
        "auth": (auth, MIGRATIONS[-1][0]),
        "outbox": (outbox_status.current, outbox_status.latest),
    }


async def migrate_all(engine: AsyncEngine, database_url: str) -> dict[str, list[int]]:
    """Apply the service's migrations, then the apitask outbox's (same database).

    The outbox tables are created whatever the delivery mode, so switching to
    ``GOTRUE_MAILER_DELIVERY=outbox`` later needs no extra step.

    Returns:
        The versions applied now, by schema (``"auth"``, ``"outbox"``).
    """
    applied = {"auth": await migrate(engine)}
    async with Outbox(open_store(parse_database_url(database_url).url)) as outbox:
        applied["outbox"] = await outbox.migrate()
    return applied
