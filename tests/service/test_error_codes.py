"""ErrorCode holds GoTrue's code strings; each constructor answers with its status."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import pytest

from apitask.mail import AddressReason
from apitask_auth.errors import (
    APIError,
    ErrorCode,
    bad_request,
    forbidden,
    internal,
    not_found,
    too_many_requests,
    unauthorized,
    unprocessable,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Service

# The strings of GoTrue's internal/api/apierrors/errorcode.go (the constants'
# values, as sent; a few Go names differ, e.g. ErrorCodeCurrentPasswordMismatch).
GOTRUE_CODES = frozenset(
    {
        "unknown",
        "unexpected_failure",
        "validation_failed",
        "bad_json",
        "email_exists",
        "phone_exists",
        "bad_jwt",
        "not_admin",
        "no_authorization",
        "user_not_found",
        "session_not_found",
        "session_expired",
        "refresh_token_not_found",
        "refresh_token_already_used",
        "flow_state_not_found",
        "flow_state_expired",
        "signup_disabled",
        "user_banned",
        "provider_email_needs_verification",
        "invite_not_found",
        "bad_oauth_state",
        "bad_oauth_callback",
        "oauth_provider_not_supported",
        "unexpected_audience",
        "single_identity_not_deletable",
        "email_conflict_identity_not_deletable",
        "identity_already_exists",
        "email_provider_disabled",
        "phone_provider_disabled",
        "too_many_enrolled_mfa_factors",
        "mfa_factor_name_conflict",
        "mfa_factor_not_found",
        "mfa_ip_address_mismatch",
        "mfa_challenge_expired",
        "mfa_verification_failed",
        "mfa_verification_rejected",
        "insufficient_aal",
        "captcha_failed",
        "saml_provider_disabled",
        "manual_linking_disabled",
        "sms_send_failed",
        "email_not_confirmed",
        "phone_not_confirmed",
        "saml_relay_state_not_found",
        "saml_relay_state_expired",
        "saml_idp_not_found",
        "saml_assertion_no_user_id",
        "saml_assertion_no_email",
        "user_already_exists",
        "sso_provider_not_found",
        "saml_metadata_fetch_failed",
        "saml_idp_already_exists",
        "sso_domain_already_exists",
        "saml_entity_id_mismatch",
        "conflict",
        "provider_disabled",
        "user_sso_managed",
        "reauthentication_needed",
        "same_password",
        "reauthentication_not_valid",
        "otp_expired",
        "otp_disabled",
        "identity_not_found",
        "weak_password",
        "over_request_rate_limit",
        "over_email_send_rate_limit",
        "over_sms_send_rate_limit",
        "bad_code_verifier",
        "anonymous_provider_disabled",
        "hook_timeout",
        "hook_timeout_after_retry",
        "hook_payload_over_size_limit",
        "hook_payload_invalid_content_type",
        "request_timeout",
        "mfa_phone_enroll_not_enabled",
        "mfa_phone_verify_not_enabled",
        "mfa_totp_enroll_not_enabled",
        "mfa_totp_verify_not_enabled",
        "mfa_webauthn_enroll_not_enabled",
        "mfa_webauthn_verify_not_enabled",
        "mfa_verified_factor_exists",
        "invalid_credentials",
        "email_address_not_authorized",
        "email_address_invalid",
        "web3_provider_disabled",
        "web3_unsupported_chain",
        "feature_disabled",
        "current_password_required",
        "current_password_invalid",
    }
)

# Answered where GoTrue's Go server answers without a code of GoTrue's (codes.py says why).
EDGE_CODES = {
    ErrorCode.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED,
    ErrorCode.REQUEST_ENTITY_TOO_LARGE,
    ErrorCode.REQUEST_HEADER_FIELDS_TOO_LARGE,
}


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_is_gotrue_s_string(code: ErrorCode) -> None:
    """Each member is a lowercase snake string, GoTrue's own unless an edge code,
    and its name is its value upper-cased (a typo in either shows)."""
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", code.value)
    assert code.name == code.value.upper()
    assert (code in GOTRUE_CODES) != (code in EDGE_CODES)


@pytest.mark.parametrize("reason", list(AddressReason))
def test_the_library_s_address_codes_are_error_codes(reason: AddressReason) -> None:
    """An address the library refuses is answered with its code: one of ours."""
    assert ErrorCode(reason.error_code) == reason.error_code


@pytest.mark.parametrize(
    ("constructor", "status"),
    [
        (bad_request, 400),
        (unauthorized, 401),
        (forbidden, 403),
        (not_found, 404),
        (unprocessable, 422),
        (too_many_requests, 429),
    ],
)
def test_constructors_set_their_status(constructor: Callable[..., APIError], status: int) -> None:
    error = constructor(ErrorCode.VALIDATION_FAILED, "text", extra={"more": 1})
    assert (error.status, error.code, error.message) == (status, "validation_failed", "text")
    assert error.extra == {"more": 1}
    assert error.internal_error is None


def test_internal_is_a_500_unexpected_failure_with_its_cause() -> None:
    cause = OSError("disk full")
    error = internal("Error sending confirmation email").with_internal_error(cause)
    assert (error.status, error.code) == (500, ErrorCode.UNEXPECTED_FAILURE)
    assert error.internal_error is cause


async def test_the_internal_error_is_logged_never_answered(
    svc: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500's internal error (here a text) is in its log line, not in the response."""

    @svc.app.get("/boom")
    async def boom() -> None:
        raise internal("Error sending magic link email").with_internal_error(
            "smtp relay said: 421 try later"
        )

    with caplog.at_level(logging.ERROR, logger="apitask_auth"):
        response = await svc.http.get("/boom")
    assert response.status_code == 500
    assert "421" not in response.text
    (record,) = [r for r in caplog.records if r.name == "apitask_auth"]
    assert record.getMessage() == (
        "Error sending magic link email on GET /boom: smtp relay said: 421 try later"
    )
