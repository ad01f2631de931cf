"""Service configuration: GoTrue's environment variables, validated at start.

Values come from the process environment, then from a ``.env`` file (the
environment wins, as in GoTrue). Names carry the ``GOTRUE_`` prefix, except
``PORT``, ``API_EXTERNAL_URL`` and ``DATABASE_URL``, which GoTrue also reads
bare. A bad value raises :class:`ConfigError` whose message starts with the
variable's name, so ``apitask-auth serve`` can fail with one clear line.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

__all__ = [
    "DEV_JWT_SECRET",
    "ConfigError",
    "Delivery",
    "EmailRateLimit",
    "Settings",
    "load_settings",
    "parse_duration",
]

logger = logging.getLogger("apitask_auth")

DEV_JWT_SECRET = "apitask-auth-dev-secret-do-not-use-in-production"
DEV_URL = "http://localhost:9999"
DEFAULT_DATABASE_URL = "sqlite:///./apitask-auth.db"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


# Go's time.ParseDuration units, in nanoseconds.
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: str) -> timedelta:
    """Parse a Go duration (``30s``, ``1m30s``, ``1.5h``, ``-2m``, ``0``).

    A bare number is read as seconds, which GoTrue configurations sometimes use
    for fields documented in seconds.

    Raises:
        ValueError: the text is not a duration.
    """
    text = value.strip()
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise ValueError(f"invalid duration {value!r}")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"invalid duration {value!r}")
        return timedelta(seconds=sign * seconds)
    total = 0.0
    position = 0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"invalid duration {value!r} (use Go syntax such as 30s or 1m30s)")
    return timedelta(seconds=sign * total)


def _duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


class Delivery(StrEnum):
    """Where the service's mail is delivered (DESIGN.md, "Configuration")."""

    INLINE = "inline"
    REQUEST = "request"
    POOL = "pool"
    OUTBOX = "outbox"


@dataclass(frozen=True, slots=True)
class EmailRateLimit:
    """``GOTRUE_RATE_LIMIT_EMAIL_SENT``: N per hour, or a bucket of N refilled every ``every``."""

    count: float
    every: timedelta | None = None

    @classmethod
    def parse(cls, raw: str) -> EmailRateLimit:
        """Parse ``"30"`` (per hour, fixed window) or ``"10/1m"`` (token bucket)."""
        number, _, per = raw.partition("/")
        count = float(number)
        if not math.isfinite(count) or count < 0:
            raise ValueError(f"expected a non-negative number, got {number!r}")
        if not per:
            return cls(count)
        every = parse_duration(per)
        if every <= timedelta(0):
            raise ValueError(f"expected a positive duration after '/', got {per!r}")
        return cls(count, every)


class Settings(BaseSettings):
    """Every setting the service reads; field ``x_y`` is variable ``GOTRUE_X_Y``."""

    model_config = SettingsConfigDict(
        env_prefix="GOTRUE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # Site, API, database
    site_url: str = ""
    uri_allow_list: CommaList = []
    api_external_url: str = Field(
        "", validation_alias=AliasChoices("API_EXTERNAL_URL", "GOTRUE_API_EXTERNAL_URL")
    )
    port: int = Field(
        9999, ge=1, le=65535, validation_alias=AliasChoices("PORT", "GOTRUE_API_PORT")
    )
    api_host: str = "127.0.0.1"
    api_max_request_duration: Duration = timedelta(seconds=10)
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "GOTRUE_DB_DATABASE_URL"),
    )
    disable_signup: bool = False
    external_email_enabled: bool = True
    external_email_magic_link_enabled: bool = True
    external_email_authorized_addresses: CommaList = []
    external_anonymous_users_enabled: bool = False
    external_flow_state_expiry_duration: Duration = timedelta(seconds=300)
    password_min_length: int = Field(6, ge=0)
    password_required_characters: str = ""
    security_update_password_require_reauthentication: bool = False
    security_update_password_require_current_password: bool = False
    security_refresh_token_rotation_enabled: bool = True
    security_refresh_token_reuse_interval: int = Field(0, ge=0)
    # Ours, not GoTrue's: see timing.py.
    security_match_response_times: bool = True

    # JWT
    jwt_secret: str = ""
    jwt_exp: int = Field(3600, gt=0)
    jwt_aud: str = ""
    jwt_default_group_name: str = "authenticated"
    jwt_admin_roles: CommaList = ["service_role", "supabase_admin"]
    jwt_admin_group_name: str = "admin"
    jwt_issuer: str = ""
    jwt_key_id: str = ""

    # SMTP
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_pass: str = ""
    smtp_admin_email: str = ""
    smtp_sender_name: str = ""
    smtp_max_frequency: Duration = timedelta(minutes=1)
    smtp_headers: str = ""

    # Mailer
    mailer_autoconfirm: bool = False
    mailer_secure_email_change_enabled: bool = True
    mailer_otp_exp: int = Field(86400, ge=0)
    mailer_otp_length: int = 6
    mailer_urlpaths_invite: str = "/verify"
    mailer_urlpaths_confirmation: str = "/verify"
    mailer_urlpaths_recovery: str = "/verify"
    mailer_urlpaths_email_change: str = "/verify"
    mailer_external_hosts: CommaList = []
    mailer_email_background_sending: bool = False
    mailer_notifications_password_changed_enabled: bool = False
    mailer_notifications_email_changed_enabled: bool = False
    mailer_delivery: Delivery | None = None

    # apitask worker pool and outbox
    worker_enabled: bool = False
    worker_count_per_cpu: int = Field(1, ge=1)
    worker_shutdown_duration: Duration = timedelta(seconds=30)
    worker_queue_size: int = Field(1000, ge=1)
    outbox_worker_enabled: bool = True

    # Rate limits
    rate_limit_header: str = ""
    rate_limit_otp: float = Field(30, ge=0)
    rate_limit_verify: float = Field(30, ge=0)
    rate_limit_token_refresh: float = Field(150, ge=0)
    rate_limit_email_sent: Annotated[EmailRateLimit, NoDecode] = EmailRateLimit(30)

    # Service only: dev mode (set by ``serve --dev``, not by the environment)
    dev: bool = Field(False, exclude=True)

    @field_validator(
        "external_flow_state_expiry_duration", "smtp_max_frequency", "worker_shutdown_duration"
    )
    @classmethod
    def _non_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("rate_limit_email_sent", mode="before")
    @classmethod
    def _email_rate(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return EmailRateLimit.parse(str(value))
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower()
        if scheme not in {"sqlite", "sqlite+aiosqlite", "postgres", "postgresql"} | {
            "postgresql+asyncpg"
        }:
            raise ValueError("expected a sqlite:///path or postgres://... URL")
        return value

    @property
    def delivery(self) -> Delivery:
        """The mail delivery mode, following GoTrue's flags when not set explicitly."""
        if self.mailer_delivery is not None:
            return self.mailer_delivery
        if self.worker_enabled:
            return Delivery.POOL
        if self.mailer_email_background_sending:
            return Delivery.REQUEST
        return Delivery.INLINE

    @property
    def otp_length(self) -> int:
        """``GOTRUE_MAILER_OTP_LENGTH``, where values outside 6..10 become 6 (§2)."""
        return self.mailer_otp_length if 6 <= self.mailer_otp_length <= 10 else 6

    @property
    def otp_exp(self) -> timedelta:
        """``GOTRUE_MAILER_OTP_EXP`` in seconds (0 means the default, a day)."""
        return timedelta(seconds=self.mailer_otp_exp or 86400)

    @property
    def max_frequency(self) -> timedelta:
        """The per-user interval between mails (0 means the default, a minute)."""
        return self.smtp_max_frequency or timedelta(minutes=1)

    @property
    def flow_state_expiry(self) -> timedelta:
        """PKCE flow-state lifetime; GoTrue never goes below five minutes."""
        return max(self.external_flow_state_expiry_duration, timedelta(seconds=300))


def _variable(settings_type: type[Settings], loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    if name.isupper():  # an alias such as PORT or API_EXTERNAL_URL
        return name
    field = settings_type.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        return str(field.validation_alias.choices[0])
    return f"GOTRUE_{name.upper()}"


def load_settings(
    *, dev: bool = False, env_file: str | None = ".env", **overrides: Any
) -> Settings:
    """Read and validate the configuration.

    Args:
        dev: dev mode: fill in local defaults for the site URL, the API URL and
            the JWT secret (with a warning), so ``scripts/serve`` needs nothing.
        env_file: the dotenv file read after the environment (None: none).
        **overrides: field values that win over both (used by tests).

    Raises:
        ConfigError: a value is missing or invalid; the message names the variable.
    """
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems = [
            f"{_variable(Settings, error['loc'])}: {error['msg']}"
            + (f" (got {error['input']!r})" if isinstance(error["input"], str) else "")
            for error in exc.errors()
        ]
        raise ConfigError("; ".join(problems)) from None
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        raise ConfigError(
            str(exc).replace('field "', "GOTRUE_").replace('" from', " from")
        ) from None
    settings.dev = dev
    if dev:
        settings.site_url = settings.site_url or DEV_URL
        settings.api_external_url = settings.api_external_url or DEV_URL
        if not settings.jwt_secret:
            settings.jwt_secret = DEV_JWT_SECRET
            logger.warning(
                "DEV MODE: GOTRUE_JWT_SECRET is not set; tokens are signed with a PUBLIC "
                "development secret. Never expose this server."
            )
    for name, value in (
        ("GOTRUE_SITE_URL", settings.site_url),
        ("API_EXTERNAL_URL", settings.api_external_url),
        ("GOTRUE_JWT_SECRET", settings.jwt_secret),
    ):
        if not value:
            raise ConfigError(f"{name}: required (or run `apitask-auth serve --dev`)")
    for name, value in (
        ("GOTRUE_SITE_URL", settings.site_url),
        ("API_EXTERNAL_URL", settings.api_external_url),
    ):
        if not re.match(r"^https?://[^/\s]+", value):
            raise ConfigError(f"{name}: expected an http(s) URL, got {value!r}")
    return settings
