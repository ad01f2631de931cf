"""Configuration: GoTrue's names, Go durations, named errors, delivery mode (§5)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from apitask_auth.config import (
    DEV_JWT_SECRET,
    ConfigError,
    Delivery,
    EmailRateLimit,
    load_settings,
    parse_duration,
    parse_smtp_headers,
)

if TYPE_CHECKING:
    from pathlib import Path

REQUIRED = {
    "GOTRUE_SITE_URL": "http://localhost:3000",
    "API_EXTERNAL_URL": "http://localhost:9999",
    "GOTRUE_JWT_SECRET": "s" * 32,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the variables it sets."""
    import os

    for name in list(os.environ):
        if name.startswith("GOTRUE_") or name in {"PORT", "API_EXTERNAL_URL", "DATABASE_URL"}:
            monkeypatch.delenv(name)


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in (REQUIRED | values).items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("1m30s", 90),
        ("1.5h", 5400),
        ("-2m", -120),
        ("+1s", 1),
        ("0", 0),
        ("900", 900),
        ("250ms", 0.25),
        ("10us", 0.00001),
        ("1h2m3s4ms", 3723.004),
        ("7d", 604800),  # days: apitask.parse_duration's addition to Go's syntax
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    """Go's time.ParseDuration syntax; a bare number is seconds, d is days."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1m 30s", "m1", "nan", "inf", "-", "1.2.3s"])
def test_bad_durations(text: str) -> None:
    """Anything else is a ValueError."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_gotrue_names_and_bare_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOTRUE_ prefix, plus PORT, API_EXTERNAL_URL and DATABASE_URL without it."""
    _env(
        monkeypatch,
        PORT="8081",
        DATABASE_URL="postgres://u@h/db",
        GOTRUE_URI_ALLOW_LIST="https://a.test/*, https://b.test/**",
        GOTRUE_WORKER_SHUTDOWN_DURATION="1m30s",
        GOTRUE_SMTP_MAX_FREQUENCY="0s",
        GOTRUE_MAILER_OTP_LENGTH="12",
        GOTRUE_EXTERNAL_FLOW_STATE_EXPIRY_DURATION="10s",
        GOTRUE_MAILER_OTP_EXP="0",
    )
    settings = load_settings(env_file=None)
    assert settings.port == 8081
    assert settings.database_url == "postgres://u@h/db"
    assert settings.uri_allow_list == ["https://a.test/*", "https://b.test/**"]
    assert settings.worker_shutdown_duration == timedelta(seconds=90)
    assert settings.max_frequency == timedelta(minutes=1)
    assert settings.otp_length == 6
    assert settings.flow_state_expiry == timedelta(seconds=300)
    assert settings.otp_exp == timedelta(days=1)


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Values come from .env unless the environment sets them."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("GOTRUE_JWT_EXP=60\nGOTRUE_JWT_AUD=from-file\n")
    _env(monkeypatch, GOTRUE_JWT_AUD="from-env")
    settings = load_settings(env_file=str(dotenv))
    assert settings.jwt_exp == 60
    assert settings.jwt_aud == "from-env"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "http"),
        ("PORT", "70000"),
        ("GOTRUE_JWT_EXP", "soon"),
        ("GOTRUE_WORKER_SHUTDOWN_DURATION", "3 parsecs"),
        ("GOTRUE_SMTP_MAX_FREQUENCY", "-1s"),
        ("GOTRUE_MAILER_DELIVERY", "pigeon"),
        ("GOTRUE_MAILER_AUTOCONFIRM", "maybe"),
        ("GOTRUE_RATE_LIMIT_EMAIL_SENT", "lots"),
        ("GOTRUE_RATE_LIMIT_EMAIL_SENT", "-1"),
        ("GOTRUE_RATE_LIMIT_EMAIL_SENT", "10/0s"),
        ("GOTRUE_RATE_LIMIT_TRUSTED_PROXIES", "-1"),
        ("GOTRUE_RATE_LIMIT_TRUSTED_PROXIES", "two"),
        ("GOTRUE_RATE_LIMIT_TRUSTED_PROXIES", "1.5"),
        ("DATABASE_URL", "mysql://x"),
        ("GOTRUE_CORS_ALLOWED_HEADERS", "x-mine, x mine"),
        ("GOTRUE_CORS_ALLOWED_HEADERS", "x-mine:1"),
        ("GOTRUE_SITE_URL", "localhost:3000"),
        ("API_EXTERNAL_URL", "ftp://x"),
        ("GOTRUE_WORKER_COUNT_PER_CPU", "0"),
        ("GOTRUE_WORKER_QUEUE_SIZE", "0"),
        ("GOTRUE_OUTBOX_WORKER_ENABLED", "sometimes"),
        ("GOTRUE_OUTBOX_WORKER_LEASE", "0s"),
        ("GOTRUE_OUTBOX_WORKER_LEASE", "a while"),
        ("GOTRUE_SMTP_MAX_POOL_SIZE", "0"),
        ("GOTRUE_SMTP_LOGGING_ENABLED", "loud"),
        ("GOTRUE_SMTP_ADMIN_EMAIL", "Auth <auth@example.com>"),
        ("GOTRUE_SMTP_HEADERS", "{not json"),
        ("GOTRUE_SMTP_HEADERS", '["X-A"]'),
        ("GOTRUE_SMTP_HEADERS", '{"X-A": "one"}'),
        ("GOTRUE_SMTP_HEADERS", '{"Subject": ["mine"]}'),
        ("GOTRUE_SMTP_HEADERS", '{"X-A": ["a\\r\\nBcc: evil@example.com"]}'),
        ("GOTRUE_SMTP_HEADERS", '{"X A": ["a"]}'),
        ("GOTRUE_MAILER_EMAIL_VALIDATION_EXTENDED", "very"),
        ("GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_URL", "ftp://validator"),
        ("GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_HEADERS", '["x"]'),
        ("GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_HEADERS", '{"X-Key": "not a list"}'),
        ("GOTRUE_MAILER_EMAIL_VALIDATION_BLOCKED_MX", "mx.example.com"),
        ("GOTRUE_MAILER_EMAIL_VALIDATION_BLOCKED_MX", "[1]"),
        ("GOTRUE_MAILER_SUBJECTS_CONFIRMATION", "{{ .Email"),
        ("GOTRUE_MAILER_TEMPLATE_MAX_SIZE", "0"),
        ("GOTRUE_MAILER_TEMPLATE_MAX_AGE", "0s"),
        ("GOTRUE_MAILER_TEMPLATE_RETRY_INTERVAL", "later"),
        ("GOTRUE_MAILER_TEMPLATE_RELOADING_ENABLED", "often"),
        ("GOTRUE_MAILER_TEMPLATE_RELOADING_MAX_IDLE", "-1m"),
        ("GOTRUE_DB_CLEANUP_ENABLED", "sometimes"),
        ("GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS", "0"),
        ("GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS", "five"),
        ("GOTRUE_SECURITY_MAX_VERIFY_ATTEMPTS", "1001"),
        ("GOTRUE_SESSIONS_TIMEBOX", "0"),
        ("GOTRUE_SESSIONS_TIMEBOX", "-1h"),
        ("GOTRUE_SESSIONS_TIMEBOX", "a day"),
        ("GOTRUE_SESSIONS_TIMEBOX", ""),
        ("GOTRUE_SESSIONS_INACTIVITY_TIMEOUT", "0s"),
        ("GOTRUE_SESSIONS_INACTIVITY_TIMEOUT", "idle"),
        ("GOTRUE_JWT_KEYS", "{not json"),
        ("GOTRUE_JWT_KEYS", '[{"kid": "a", "kty": "EC", "alg": "ES256"}]'),
        ("GOTRUE_JWT_KEYS", '[{"kid": "a", "kty": "oct", "alg": "HS256", "k": "c2hvcnQ"}]'),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A bad value fails at start with a message that starts with the variable's name."""
    _env(monkeypatch, **{name: value})
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load_settings(env_file=None)


def test_session_limits_are_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """GOTRUE_SESSIONS_TIMEBOX and _INACTIVITY_TIMEOUT: unset is no limit (GoTrue's
    nil); set, a Go duration."""
    _env(monkeypatch)
    unset = load_settings(env_file=None)
    assert unset.sessions_timebox is None
    assert unset.sessions_inactivity_timeout is None
    _env(monkeypatch, GOTRUE_SESSIONS_TIMEBOX="24h", GOTRUE_SESSIONS_INACTIVITY_TIMEOUT="90m")
    settings = load_settings(env_file=None)
    assert settings.sessions_timebox == timedelta(hours=24)
    assert settings.sessions_inactivity_timeout == timedelta(minutes=90)


def test_mail_templates_and_validation_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GoTrue's per-type subject and template variables (from .env too), and the
    validation settings, parsed."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("GOTRUE_MAILER_SUBJECTS_INVITE=Join {{ .SiteURL }}\n")
    _env(
        monkeypatch,
        GOTRUE_MAILER_SUBJECTS_CONFIRMATION="Welcome {{ .Email }}",
        GOTRUE_MAILER_SUBJECTS_MAGIC_LINK="",  # empty counts as unset
        GOTRUE_MAILER_TEMPLATES_RECOVERY="https://templates.example.com/recovery.html",
        GOTRUE_MAILER_TEMPLATES_PASSWORD_CHANGED_NOTIFICATION="/etc/mail/pw.html",
        GOTRUE_MAILER_EMAIL_VALIDATION_EXTENDED="true",
        GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_HEADERS='{"X-Key": ["k"]}',
        GOTRUE_MAILER_EMAIL_VALIDATION_BLOCKED_MX='["mx.bad.example"]',
    )
    settings = load_settings(env_file=str(dotenv))
    assert settings.mailer_subjects == {
        "confirmation": "Welcome {{ .Email }}",
        "invite": "Join {{ .SiteURL }}",
    }
    assert settings.mailer_templates == {
        "recovery": "https://templates.example.com/recovery.html",
        "password_changed_notification": "/etc/mail/pw.html",
    }
    assert settings.mailer_email_validation_extended is True
    assert settings.validation_service_headers == {"X-Key": ["k"]}
    assert settings.blocked_mx == ["mx.bad.example"]


def test_smtp_host_needs_a_from_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """An SMTP server without GOTRUE_SMTP_ADMIN_EMAIL would send mail from nobody."""
    _env(monkeypatch, GOTRUE_SMTP_HOST="smtp.example.com")
    with pytest.raises(ConfigError, match=r"^GOTRUE_SMTP_ADMIN_EMAIL: required when"):
        load_settings(env_file=None)


def test_smtp_password_needs_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password alone cannot authenticate: refused rather than silently unused."""
    _env(monkeypatch, GOTRUE_SMTP_PASS="secret")
    with pytest.raises(ConfigError, match=r"^GOTRUE_SMTP_PASS: set without GOTRUE_SMTP_USER"):
        load_settings(env_file=None)


def test_mail_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SMTP and worker settings the mail chain reads, and their defaults."""
    _env(monkeypatch)
    defaults = load_settings(env_file=None)
    assert (defaults.smtp_max_pool_size, defaults.smtp_logging_enabled) == (4, False)
    assert (defaults.worker_count_per_cpu, defaults.worker_queue_size) == (8, 1000)
    assert defaults.outbox_worker_enabled is True
    assert defaults.outbox_worker_lease == timedelta(seconds=30)
    _env(
        monkeypatch,
        GOTRUE_SMTP_HOST="smtp.example.com",
        GOTRUE_SMTP_ADMIN_EMAIL="auth@example.com",
        GOTRUE_SMTP_MAX_POOL_SIZE="2",
        GOTRUE_SMTP_HEADERS='{"X-Kind": ["$messageType", ""], "": ["x"]}',
        GOTRUE_OUTBOX_WORKER_ENABLED="false",
    )
    settings = load_settings(env_file=None)
    assert settings.smtp_max_pool_size == 2
    assert parse_smtp_headers(settings.smtp_headers) == {"X-Kind": ["$messageType"]}
    assert settings.outbox_worker_enabled is False


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_outside_dev_mode(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """SITE_URL, API_EXTERNAL_URL and the JWT secret are required unless --dev."""
    _env(monkeypatch)
    monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match=f"^{name}: required"):
        load_settings(env_file=None)


def test_dev_mode_urls_follow_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dev mode on another port: the default site and API URLs (mail links) use it."""
    monkeypatch.setenv("PORT", "8123")
    settings = load_settings(dev=True, env_file=None)
    assert settings.site_url == settings.api_external_url == "http://localhost:8123"


def test_dev_mode_turns_phone_sign_in_on_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dev mode: phone sign-in is on (texts go to the dev inbox); an explicit
    GOTRUE_EXTERNAL_PHONE_ENABLED=false wins, and outside dev mode it stays off."""
    assert load_settings(dev=True, env_file=None).external_phone_enabled
    _env(monkeypatch)
    assert not load_settings(env_file=None).external_phone_enabled
    monkeypatch.setenv("GOTRUE_EXTERNAL_PHONE_ENABLED", "false")
    assert not load_settings(dev=True, env_file=None).external_phone_enabled


def test_dev_mode_defaults(caplog: pytest.LogCaptureFixture) -> None:
    """Dev mode: local URLs, the SQLite file, and the dev secret with a loud warning."""
    settings = load_settings(dev=True, env_file=None)
    assert settings.site_url == "http://localhost:9999"
    assert settings.api_external_url == "http://localhost:9999"
    assert settings.database_url == "sqlite:///./apitask-auth.db"
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.port == 9999
    assert "PUBLIC development secret" in caplog.text


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ({}, Delivery.INLINE),
        ({"GOTRUE_MAILER_EMAIL_BACKGROUND_SENDING": "true"}, Delivery.REQUEST),
        ({"GOTRUE_WORKER_ENABLED": "true"}, Delivery.POOL),
        (
            {"GOTRUE_WORKER_ENABLED": "true", "GOTRUE_MAILER_EMAIL_BACKGROUND_SENDING": "true"},
            Delivery.POOL,
        ),
        ({"GOTRUE_MAILER_DELIVERY": "outbox", "GOTRUE_WORKER_ENABLED": "true"}, Delivery.OUTBOX),
        ({"GOTRUE_MAILER_DELIVERY": "inline", "GOTRUE_WORKER_ENABLED": "true"}, Delivery.INLINE),
    ],
)
def test_delivery_mode(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], mode: Delivery
) -> None:
    """GOTRUE_MAILER_DELIVERY wins; else worker -> pool, background sending -> request."""
    _env(monkeypatch, **values)
    assert load_settings(env_file=None).delivery is mode


def test_email_rate_limit_forms() -> None:
    """N is per hour; N/duration is a token bucket."""
    assert EmailRateLimit.parse("30") == EmailRateLimit(30)
    assert EmailRateLimit.parse("10/1m") == EmailRateLimit(10, timedelta(minutes=1))


@pytest.mark.parametrize(
    "name", ["GOTRUE_SITE_URL", "API_EXTERNAL_URL", "GOTRUE_MAILER_EMAIL_VALIDATION_SERVICE_URL"]
)
@pytest.mark.parametrize("value", ["https:///no-host", "example.com", "ws://example.com"])
def test_url_settings_share_one_rule(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Every URL setting is held to the same http(s)-with-a-host rule, with the same words."""
    _env(monkeypatch, **{name: value})
    with pytest.raises(ConfigError, match=rf"^{name}: .*expected an http\(s\) URL"):
        load_settings(env_file=None)
    _env(monkeypatch, **{name: "https://example.com/any/path"})
    load_settings(env_file=None)
