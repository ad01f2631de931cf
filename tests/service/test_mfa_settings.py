"""The GOTRUE_MFA_* settings: GoTrue's defaults, and a bad value stops the start with
a message naming the variable."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apitask_auth.config import ConfigError, load_settings

REQUIRED = {
    "GOTRUE_SITE_URL": "http://localhost:3000",
    "API_EXTERNAL_URL": "http://localhost:9999",
    "GOTRUE_JWT_SECRET": "s" * 32,
}


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the required variables, and what each test adds."""
    import os

    for name in list(os.environ):
        if name.startswith("GOTRUE_") or name in {"PORT", "API_EXTERNAL_URL", "DATABASE_URL"}:
            monkeypatch.delenv(name)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)


def test_defaults_are_gotrues() -> None:
    """TOTP on, phone off, 10 factors, 5-minute challenges, 15 a minute, 6 digits, 1 minute."""
    settings = load_settings(env_file=None)
    assert (settings.mfa_totp_enroll_enabled, settings.mfa_totp_verify_enabled) == (True, True)
    assert (settings.mfa_phone_enroll_enabled, settings.mfa_phone_verify_enabled) == (False, False)
    assert (settings.mfa_max_enrolled_factors, settings.mfa_max_verified_factors) == (10, 10)
    assert settings.mfa_challenge_expiry == timedelta(seconds=300)
    assert settings.mfa_rate_limit_challenge_and_verify == 15
    assert (settings.mfa_phone_code_length, settings.mfa_phone_interval) == (
        6,
        timedelta(minutes=1),
    )


def test_gotrues_floors_and_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """As GoTrue: challenges live at least 300 s, a code length outside 6..10 is 6, a
    zero interval is a minute; Go durations are read."""
    monkeypatch.setenv("GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION", "60")
    monkeypatch.setenv("GOTRUE_MFA_PHONE_OTP_LENGTH", "12")
    monkeypatch.setenv("GOTRUE_MFA_PHONE_MAX_FREQUENCY", "0")
    settings = load_settings(env_file=None)
    assert settings.mfa_challenge_expiry == timedelta(seconds=300)
    assert (settings.mfa_phone_code_length, settings.mfa_phone_interval) == (
        6,
        timedelta(minutes=1),
    )
    monkeypatch.setenv("GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION", "900")
    monkeypatch.setenv("GOTRUE_MFA_PHONE_OTP_LENGTH", "8")
    monkeypatch.setenv("GOTRUE_MFA_PHONE_MAX_FREQUENCY", "2m30s")
    settings = load_settings(env_file=None)
    assert settings.mfa_challenge_expiry == timedelta(seconds=900)
    assert (settings.mfa_phone_code_length, settings.mfa_phone_interval) == (
        8,
        timedelta(seconds=150),
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GOTRUE_MFA_TOTP_ENROLL_ENABLED", "maybe"),
        ("GOTRUE_MFA_TOTP_VERIFY_ENABLED", "2"),
        ("GOTRUE_MFA_PHONE_ENROLL_ENABLED", "yes please"),
        ("GOTRUE_MFA_PHONE_VERIFY_ENABLED", "x"),
        ("GOTRUE_MFA_MAX_ENROLLED_FACTORS", "0"),
        ("GOTRUE_MFA_MAX_VERIFIED_FACTORS", "ten"),
        ("GOTRUE_MFA_CHALLENGE_EXPIRY_DURATION", "-1"),
        ("GOTRUE_MFA_RATE_LIMIT_CHALLENGE_AND_VERIFY", "-5"),
        ("GOTRUE_MFA_PHONE_OTP_LENGTH", "six"),
        ("GOTRUE_MFA_PHONE_MAX_FREQUENCY", "-1m"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Each setting is checked at start."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings(env_file=None)
