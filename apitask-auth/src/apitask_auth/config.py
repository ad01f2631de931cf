"""Service configuration: GoTrue's environment variables, validated at start.

Values come from the process environment, then from a ``.env`` file (the
environment wins, as in GoTrue). Names carry the ``GOTRUE_`` prefix, except
``PORT``, ``API_EXTERNAL_URL`` and ``DATABASE_URL``, which GoTrue also reads
bare. A bad value raises :class:`ConfigError` whose message starts with the
variable's name, so ``apitask-auth serve`` can fail with one clear line.
The syntax of the values (Go durations, comma lists, JSON, SMTP headers, the
e-mail rate) is read by :mod:`apitask_auth.config_parsers`.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, get_args

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from apitask.mail import (
    InvalidMessageError,
    MailType,
    TemplateError,
    TemplateSource,
    check_address,
    compile_template,
)
from apitask_auth.accounts.jwt_keys import JWTKeys, JWTKeysError
from apitask_auth.config_parsers import (
    _HEADER_NAME,
    CommaList,
    Duration,
    EmailRateLimit,
    _json_value,
    check_hook_uri,
    check_http_url,
    parse_duration,
    parse_hook_secrets,
    parse_smtp_headers,
    parse_test_otps,
)
from apitask_auth.config_sms import check_sms_provider, check_sms_settings
from apitask_auth.storage.database_url import DatabaseURL, parse_database_url

__all__ = [
    "DEV_JWT_SECRET",
    "ConfigError",
    "Delivery",
    "EmailRateLimit",
    "Settings",
    "load_settings",
    "parse_duration",
    "parse_smtp_headers",
]

logger = logging.getLogger("apitask_auth")

DEV_JWT_SECRET = "apitask-auth-dev-secret-do-not-use-in-production"
DEV_HOST = "http://localhost"
DEFAULT_DATABASE_URL = "sqlite:///./apitask-auth.db"


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


class Delivery(StrEnum):
    """Where the service's mail is delivered (DESIGN.md, "Configuration")."""

    INLINE = "inline"
    REQUEST = "request"
    POOL = "pool"
    OUTBOX = "outbox"


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
    external_phone_enabled: bool = False
    external_flow_state_expiry_duration: Duration = timedelta(seconds=300)
    password_min_length: int = Field(6, ge=0)
    password_required_characters: str = ""
    security_update_password_require_reauthentication: bool = False
    security_update_password_require_current_password: bool = False
    security_refresh_token_rotation_enabled: bool = True
    security_refresh_token_reuse_interval: int = Field(0, ge=0)
    # Sessions (GoTrue's conf.SessionsConfiguration): unset is off, as GoTrue. The
    # timebox bounds a session's refreshes from its start; the inactivity timeout
    # from its last refresh (accounts/sessions.py).
    sessions_timebox: Duration | None = None
    sessions_inactivity_timeout: Duration | None = None
    # Ours, not GoTrue's: see timing.py.
    security_match_response_times: bool = True
    security_response_time_floor: Duration = timedelta(milliseconds=10)
    # Ours, not GoTrue's: how often one mailed code may be tried (see attempts.py).
    security_max_verify_attempts: int = Field(5, ge=1, le=1000)
    # Request headers browsers may send from other origins, beyond cors.ALLOWED_HEADERS.
    cors_allowed_headers: CommaList = []

    # JWT
    jwt_secret: str = ""
    jwt_exp: int = Field(3600, gt=0)
    jwt_aud: str = ""
    jwt_default_group_name: str = "authenticated"
    jwt_admin_roles: CommaList = ["service_role", "supabase_admin"]
    jwt_admin_group_name: str = "admin"
    jwt_issuer: str = ""
    jwt_key_id: str = ""
    # A JSON array of private JWKs, one with "sign" in key_ops (accounts/jwt_keys.py).
    jwt_keys: str = ""

    # SMTP
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_pass: str = ""
    smtp_admin_email: str = ""
    smtp_sender_name: str = ""
    smtp_max_frequency: Duration = timedelta(minutes=1)
    smtp_headers: str = ""
    smtp_logging_enabled: bool = False
    smtp_max_pool_size: int = Field(4, ge=1, le=100)

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
    mailer_email_validation_extended: bool = False
    mailer_email_validation_service_url: str = ""
    mailer_email_validation_service_headers: str = ""
    mailer_email_validation_blocked_mx: str = ""
    # GOTRUE_MAILER_SUBJECTS_<KEY> / GOTRUE_MAILER_TEMPLATES_<KEY>, by mail type:
    # collected by load_settings from the environment and .env.
    mailer_subjects: dict[str, str] = Field(default_factory=dict)
    mailer_templates: dict[str, str] = Field(default_factory=dict)
    mailer_template_max_size: int = Field(1_000_000, ge=1)
    mailer_template_max_age: Duration = timedelta(minutes=10)
    mailer_template_retry_interval: Duration = timedelta(seconds=10)
    mailer_template_reloading_enabled: bool = False
    mailer_template_reloading_max_idle: Duration = timedelta(minutes=20)

    # SMS delivery (delivery/sms): the provider and the texts' templates
    sms_provider: str = ""
    sms_template: str = ""
    mfa_phone_template: str = ""
    sms_twilio_account_sid: str = ""
    sms_twilio_auth_token: str = ""
    sms_twilio_message_service_sid: str = ""
    sms_twilio_content_sid: str = ""
    # Ours: where Twilio's API is (tests point it at a local server).
    sms_twilio_api_base_url: str = "https://api.twilio.com"
    # GoTrue's timeout on calls to providers; ours applies it to every step too.
    internal_http_timeout: Duration = timedelta(seconds=10)
    # SMS (the phone flows; the provider and the template belong to the SMS chain)
    sms_autoconfirm: bool = False
    sms_otp_exp: int = Field(60, ge=0)
    sms_otp_length: int = 6
    sms_max_frequency: Duration = timedelta(minutes=1)
    # number:code pairs; the numbers get the code, and no text is sent to them.
    sms_test_otp: str = ""
    # RFC 3339; the test codes stop working then ("" = no end).
    sms_test_otp_valid_until: str = ""

    # apitask worker pool and outbox
    worker_enabled: bool = False
    worker_count_per_cpu: int = Field(8, ge=1)
    worker_shutdown_duration: Duration = timedelta(seconds=30)
    worker_queue_size: int = Field(1000, ge=1)
    outbox_worker_enabled: bool = True
    # Ours: how long the in-process outbox worker's claims last without a
    # heartbeat, so how soon another worker takes over the jobs of a `serve`
    # that died (`apitask-auth worker --lease` is the same for that command).
    outbox_worker_lease: Duration = timedelta(seconds=30)

    # Send hooks (GoTrue's HTTP hooks; they replace SMTP / the SMS provider when enabled)
    hook_send_email_enabled: bool = False
    hook_send_email_uri: str = ""
    hook_send_email_secrets: str = Field("", repr=False)
    hook_send_sms_enabled: bool = False
    hook_send_sms_uri: str = ""
    hook_send_sms_secrets: str = Field("", repr=False)
    # Ours: how long a hook has to answer one attempt (GoTrue's is a fixed 5s).
    hook_timeout: Duration = timedelta(seconds=5)

    # Rate limits
    rate_limit_header: str = ""
    # Ours: how many proxies in front append to the rate-limit header
    # (X-Forwarded-For); 0 keys on the header as a whole, as GoTrue does.
    rate_limit_trusted_proxies: int = Field(0, ge=0)
    rate_limit_otp: float = Field(30, ge=0)
    rate_limit_verify: float = Field(30, ge=0)
    rate_limit_token_refresh: float = Field(150, ge=0)
    rate_limit_anonymous_users: float = Field(30, ge=0)
    rate_limit_email_sent: Annotated[EmailRateLimit, NoDecode] = EmailRateLimit(30)
    # The same syntax as the e-mail allowance (GoTrue reads both as a Rate).
    rate_limit_sms_sent: Annotated[EmailRateLimit, NoDecode] = EmailRateLimit(30)

    # MFA (docs/gotrue.md §3.18): TOTP on, phone off, as GoTrue's defaults.
    mfa_totp_enroll_enabled: bool = True
    mfa_totp_verify_enabled: bool = True
    mfa_phone_enroll_enabled: bool = False
    mfa_phone_verify_enabled: bool = False
    mfa_max_enrolled_factors: int = Field(10, ge=1, le=1000)
    mfa_max_verified_factors: int = Field(10, ge=1, le=1000)
    # Seconds; GoTrue raises anything below 300 to 300 (see mfa_challenge_expiry).
    mfa_challenge_expiry_duration: float = Field(300, ge=0)
    mfa_rate_limit_challenge_and_verify: float = Field(15, ge=0)
    mfa_phone_otp_length: int = 6
    mfa_phone_max_frequency: Duration = timedelta(minutes=1)

    # The stale-row cleanup after each successful mutating request
    # (GoTrue's GOTRUE_DB_CLEANUP_ENABLED; on by default here, see docs/service.md).
    db_cleanup_enabled: bool = True

    # Observability: /metrics (Prometheus text format) and the log lines
    metrics_enabled: bool = False
    metrics_exporter: str = "prometheus"
    log_level: str = "info"
    log_format: str = "json"

    # Service only: dev mode (set by ``serve --dev``, not by the environment)
    dev: bool = Field(False, exclude=True)

    @field_validator("jwt_keys")
    @classmethod
    def _jwt_keys(cls, value: str) -> str:
        try:
            JWTKeys.parse(value, secret="")
        except JWTKeysError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def jwt_keyset(self) -> JWTKeys:
        """The keys that sign and verify access tokens (``GOTRUE_JWT_KEYS`` and the secret)."""
        return _keyset(self.jwt_keys, self.jwt_secret, self.jwt_key_id)

    @field_validator("metrics_exporter")
    @classmethod
    def _prometheus_only(cls, value: str) -> str:
        if value.lower() != "prometheus":
            raise ValueError("only the prometheus exporter is supported (served at /metrics)")
        return "prometheus"

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        if value.lower() not in {"json", "text"}:
            raise ValueError("must be json or text")
        return value.lower()

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "FATAL", "PANIC"}:
            raise ValueError("must be one of debug, info, warning, error, fatal, panic")
        return value.lower()

    @field_validator(
        "external_flow_state_expiry_duration",
        "smtp_max_frequency",
        "mfa_phone_max_frequency",
        "sms_max_frequency",
        "worker_shutdown_duration",
    )
    @classmethod
    def _non_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("hook_timeout")
    @classmethod
    def _hook_timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(seconds=60):
            raise ValueError("must be more than 0s and at most 60s")
        return value

    @field_validator("security_response_time_floor")
    @classmethod
    def _floor(cls, value: timedelta) -> timedelta:
        # Every answer that could have sent mail waits at least this long.
        if not timedelta(0) <= value <= timedelta(seconds=10):
            raise ValueError("must be between 0s and 10s")
        return value

    @field_validator(
        "mailer_template_max_age",
        "mailer_template_retry_interval",
        "mailer_template_reloading_max_idle",
        "outbox_worker_lease",
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("sessions_timebox", "sessions_inactivity_timeout")
    @classmethod
    def _positive_when_set(cls, value: timedelta | None) -> timedelta | None:
        # GoTrue refuses 0 too (its Validate): "off" is leaving the variable unset.
        if value is not None and value <= timedelta(0):
            raise ValueError("must be positive when set (leave it unset for no limit)")
        return value

    @field_validator("cors_allowed_headers")
    @classmethod
    def _header_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
        return value

    @field_validator("smtp_headers")
    @classmethod
    def _smtp_headers(cls, value: str) -> str:
        parse_smtp_headers(value)
        return value

    @field_validator("smtp_admin_email")
    @classmethod
    def _smtp_admin_email(cls, value: str) -> str:
        if value:
            try:
                check_address(value)
            except InvalidMessageError:
                raise ValueError(
                    "expected a bare e-mail address such as noreply@example.com"
                ) from None
        return value

    @field_validator("mailer_email_validation_service_url")
    @classmethod
    def _service_url(cls, value: str) -> str:
        return check_http_url(value) if value else value

    @field_validator("mailer_email_validation_service_headers")
    @classmethod
    def _service_headers(cls, value: str) -> str:
        _json_value(value, dict, "a JSON object of header name to list of values")
        return value

    @field_validator("mailer_email_validation_blocked_mx")
    @classmethod
    def _blocked_mx(cls, value: str) -> str:
        _json_value(value, list, "a JSON array of host names")
        return value

    @property
    def validation_service_headers(self) -> dict[str, list[str]]:
        """``GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_HEADERS``, parsed."""
        headers: dict[str, list[str]] = _json_value(
            self.mailer_email_validation_service_headers, dict, ""
        )
        return headers

    @property
    def blocked_mx(self) -> list[str]:
        """``GOTRUE_MAILER_EMAIL_VALIDATION_BLOCKED_MX``, parsed."""
        hosts: list[str] = _json_value(self.mailer_email_validation_blocked_mx, list, "")
        return hosts

    @field_validator("sms_provider")
    @classmethod
    def _sms_provider(cls, value: str) -> str:
        return check_sms_provider(value)

    @field_validator("sms_template", "mfa_phone_template")
    @classmethod
    def _sms_template(cls, value: str) -> str:
        if value:
            compile_template(value, html=False, name="SMS template")
        return value

    @field_validator("sms_twilio_api_base_url")
    @classmethod
    def _twilio_base_url(cls, value: str) -> str:
        return check_http_url(value).rstrip("/")

    @field_validator("internal_http_timeout")
    @classmethod
    def _http_timeout(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be a positive duration such as 10s")
        return value

    @field_validator("sms_test_otp")
    @classmethod
    def _test_otps(cls, value: str) -> str:
        parse_test_otps(value)
        return value

    @field_validator("sms_test_otp_valid_until")
    @classmethod
    def _valid_until(cls, value: str) -> str:
        _rfc3339(value)
        return value

    @field_validator("rate_limit_email_sent", "rate_limit_sms_sent", mode="before")
    @classmethod
    def _email_rate(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return EmailRateLimit.parse(str(value))
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        parse_database_url(value)
        return value

    @property
    def database(self) -> DatabaseURL:
        """``DATABASE_URL``, read: the backend and the URL every connection uses."""
        return parse_database_url(self.database_url)

    def hook_secrets(self, hook: str) -> list[str]:
        """The ``whsec_...`` secrets of ``hook`` (``"send_email"``, ``"send_sms"``)."""
        return parse_hook_secrets(getattr(self, f"hook_{hook}_secrets"))

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
        """``GOTRUE_MAILER_OTP_LENGTH``, read by :func:`_code_length` (§2)."""
        return _code_length(self.mailer_otp_length)

    @property
    def otp_exp(self) -> timedelta:
        """``GOTRUE_MAILER_OTP_EXP`` in seconds (0 means the default, a day)."""
        return timedelta(seconds=self.mailer_otp_exp or 86400)

    @property
    def max_frequency(self) -> timedelta:
        """The per-user interval between mails (0 means the default, a minute)."""
        return self.smtp_max_frequency or timedelta(minutes=1)

    @property
    def mfa_challenge_expiry(self) -> timedelta:
        """How long an MFA challenge may be verified; GoTrue never goes below five minutes."""
        return timedelta(seconds=max(self.mfa_challenge_expiry_duration, 300))

    @property
    def mfa_phone_code_length(self) -> int:
        """``GOTRUE_MFA_PHONE_OTP_LENGTH``, read by :func:`_code_length`."""
        return _code_length(self.mfa_phone_otp_length)

    @property
    def mfa_phone_interval(self) -> timedelta:
        """The interval between two texts to one phone factor (0 means a minute, as GoTrue)."""
        return self.mfa_phone_max_frequency or timedelta(minutes=1)

    @property
    def sms_code_length(self) -> int:
        """``GOTRUE_SMS_OTP_LENGTH``, read by :func:`_code_length`."""
        return _code_length(self.sms_otp_length)

    @property
    def sms_code_exp(self) -> timedelta:
        """``GOTRUE_SMS_OTP_EXP`` in seconds (0 means GoTrue's default, a minute)."""
        return timedelta(seconds=self.sms_otp_exp or 60)

    @property
    def sms_interval(self) -> timedelta:
        """The per-user interval between texts (0 means the default, a minute)."""
        return self.sms_max_frequency or timedelta(minutes=1)

    def test_otp(self, phone: str, at: datetime) -> str | None:
        """``GOTRUE_SMS_TEST_OTP``'s code for ``phone`` while the codes are valid, else None."""
        until = _rfc3339(self.sms_test_otp_valid_until)
        if until is not None and at >= until:
            return None
        return _test_otps(self.sms_test_otp).get(phone)

    @property
    def flow_state_expiry(self) -> timedelta:
        """PKCE flow-state lifetime; GoTrue never goes below five minutes."""
        return max(self.external_flow_state_expiry_duration, timedelta(seconds=300))


@functools.lru_cache(maxsize=8)
def _code_length(configured: int) -> int:
    """A code length setting as GoTrue reads each: values outside 6..10 become 6."""
    return configured if 6 <= configured <= 10 else 6


def _test_otps(raw: str) -> dict[str, str]:
    return parse_test_otps(raw)


def _rfc3339(value: str) -> datetime | None:
    """An RFC 3339 time (aware; ``Z`` allowed), None for ""; ValueError otherwise."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("expected an RFC 3339 time such as 2030-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        raise ValueError("expected an RFC 3339 time with its offset (Z or +hh:mm)")
    return parsed


def _variable(settings_type: type[Settings], loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "?"
    if name.isupper():  # an alias such as PORT or API_EXTERNAL_URL
        return name
    field = settings_type.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        return str(field.validation_alias.choices[0])
    return f"GOTRUE_{name.upper()}"


@functools.lru_cache(maxsize=8)
def _keyset(keys: str, secret: str, key_id: str) -> JWTKeys:
    # Parsed once per configuration, not per request: an RSA key takes milliseconds.
    return JWTKeys.parse(keys, secret, key_id)


def load_settings(
    *, dev: bool = False, env_file: str | None = ".env", **overrides: Any
) -> Settings:
    """Read and validate the configuration.

    Args:
        dev: dev mode: fill in local defaults for the site URL, the API URL and
            the JWT secret (with a warning), and turn phone sign-in on unless
            set, so ``scripts/serve`` needs nothing.
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
            # Not the URL: it may carry the database password.
            + (
                f" (got {error['input']!r})"
                if isinstance(error["input"], str)
                and _variable(Settings, error["loc"]) != "DATABASE_URL"
                else ""
            )
            for error in exc.errors()
        ]
        raise ConfigError("; ".join(problems)) from None
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        raise ConfigError(
            str(exc).replace('field "', "GOTRUE_").replace('" from', " from")
        ) from None
    settings.dev = dev
    _mail_templates(settings, env_file, overrides)
    if dev:
        # The links in mail must reach this server, on whatever port it listens.
        dev_url = f"{DEV_HOST}:{settings.port}"
        settings.site_url = settings.site_url or dev_url
        settings.api_external_url = settings.api_external_url or dev_url
        # A person reads dev logs: text lines, unless GOTRUE_LOG_FORMAT says otherwise.
        if "log_format" not in settings.model_fields_set:
            settings.log_format = "text"
        # Phone sign-in works with no account anywhere: without a provider the
        # texts land in the dev inbox. GOTRUE_EXTERNAL_PHONE_ENABLED=false still wins.
        if "external_phone_enabled" not in settings.model_fields_set:
            settings.external_phone_enabled = True
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
        try:
            check_http_url(value)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}, got {value!r}") from None
    if settings.smtp_pass and not settings.smtp_user:
        raise ConfigError("GOTRUE_SMTP_PASS: set without GOTRUE_SMTP_USER (AUTH needs both)")
    try:
        check_sms_settings(settings)
    except ValueError as exc:  # its message starts with the variable's name
        raise ConfigError(str(exc)) from None
    if settings.smtp_host and not settings.smtp_admin_email:
        raise ConfigError(
            "GOTRUE_SMTP_ADMIN_EMAIL: required when GOTRUE_SMTP_HOST is set (the From address)"
        )
    for hook in HOOKS:
        _check_hook(settings, hook)
    return settings


HOOKS = ("send_email", "send_sms")
"""The hooks the service calls: GOTRUE_HOOK_<NAME>_ENABLED / _URI / _SECRETS."""


def _check_hook(settings: Settings, hook: str) -> None:
    """An enabled hook needs a URI we can call and secrets to sign with (GoTrue's checks,
    stricter: see :func:`~apitask_auth.config_parsers.parse_hook_secrets`)."""
    if not getattr(settings, f"hook_{hook}_enabled"):
        return
    prefix = f"GOTRUE_HOOK_{hook.upper()}"
    uri = getattr(settings, f"hook_{hook}_uri")
    if not uri:
        raise ConfigError(f"{prefix}_URI: required when {prefix}_ENABLED is true")
    try:
        check_hook_uri(uri)
    except ValueError as exc:
        raise ConfigError(f"{prefix}_URI: {exc}") from None
    try:
        settings.hook_secrets(hook)
    except ValueError as exc:
        raise ConfigError(f"{prefix}_SECRETS: {exc}") from None


def _mail_templates(settings: Settings, env_file: str | None, overrides: dict[str, Any]) -> None:
    """Collect ``GOTRUE_MAILER_SUBJECTS_*`` and ``GOTRUE_MAILER_TEMPLATES_*`` (the
    environment wins over ``.env``; empty counts as unset) and check each: a subject
    must compile and a template location must parse, or the start fails naming the
    variable."""
    environ = {**(dotenv_values(env_file) if env_file else {}), **os.environ}
    variables = {name.upper(): value for name, value in environ.items() if value}
    for option in ("subjects", "templates"):
        prefix = f"GOTRUE_MAILER_{option.upper()}_"
        if f"mailer_{option}" not in overrides:
            setattr(
                settings,
                f"mailer_{option}",
                {
                    kind: variables[prefix + kind.upper()]
                    for kind in get_args(MailType)
                    if prefix + kind.upper() in variables
                },
            )
        for kind, value in getattr(settings, f"mailer_{option}").items():
            try:
                if kind not in get_args(MailType):
                    raise ValueError(f"unknown mail type(s) in {option}: {kind}")
                if option == "subjects":
                    compile_template(value, name=f"{kind} subject", html=False)
                elif value:  # an empty location means the default body
                    TemplateSource.parse(value, site_url=settings.site_url)
            except (ValueError, TemplateError) as exc:
                raise ConfigError(f"{prefix}{kind.upper()}: {exc}") from None
