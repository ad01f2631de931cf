"""The ``error_code`` of every answer the service gives, named as GoTrue names it.

GoTrue declares its codes as constants (``internal/api/apierrors/errorcode.go``);
:class:`ErrorCode` holds the ones we answer with, spelled as GoTrue sends them.
A code joins the enum when a handler first needs it: the list is what this
service says, not all GoTrue can say.
"""

from __future__ import annotations

import enum

__all__ = ["ErrorCode"]


class ErrorCode(enum.StrEnum):
    """An ``error_code`` (legacy format) or ``code`` (2024-01-01 format) of an answer.

    A ``StrEnum``: a member is its wire string, so it goes into JSON, headers
    and redirect fragments unchanged.
    """

    # -- any endpoint
    UNKNOWN = "unknown"
    """An HTTP error no handler gave a code to (GoTrue's fallback)."""
    UNEXPECTED_FAILURE = "unexpected_failure"
    """A 500: what went wrong is in the log, not in the answer."""
    VALIDATION_FAILED = "validation_failed"
    BAD_JSON = "bad_json"

    # -- the caller (bearer token, admin)
    NO_AUTHORIZATION = "no_authorization"
    BAD_JWT = "bad_jwt"
    NOT_ADMIN = "not_admin"
    USER_NOT_FOUND = "user_not_found"
    SESSION_NOT_FOUND = "session_not_found"
    USER_BANNED = "user_banned"

    # -- sessions, refresh tokens, PKCE
    SESSION_EXPIRED = "session_expired"
    REFRESH_TOKEN_NOT_FOUND = "refresh_token_not_found"
    REFRESH_TOKEN_ALREADY_USED = "refresh_token_already_used"
    FLOW_STATE_NOT_FOUND = "flow_state_not_found"
    FLOW_STATE_EXPIRED = "flow_state_expired"
    BAD_CODE_VERIFIER = "bad_code_verifier"

    # -- accounts, passwords, codes
    INVALID_CREDENTIALS = "invalid_credentials"
    EMAIL_EXISTS = "email_exists"
    PHONE_EXISTS = "phone_exists"
    PHONE_NOT_CONFIRMED = "phone_not_confirmed"
    SMS_SEND_FAILED = "sms_send_failed"
    USER_ALREADY_EXISTS = "user_already_exists"
    EMAIL_NOT_CONFIRMED = "email_not_confirmed"
    EMAIL_ADDRESS_INVALID = "email_address_invalid"
    EMAIL_ADDRESS_NOT_AUTHORIZED = "email_address_not_authorized"
    WEAK_PASSWORD = "weak_password"
    SAME_PASSWORD = "same_password"
    CURRENT_PASSWORD_REQUIRED = "current_password_required"
    CURRENT_PASSWORD_INVALID = "current_password_invalid"
    """Go names it ``ErrorCodeCurrentPasswordMismatch``; this is what it sends."""
    REAUTHENTICATION_NEEDED = "reauthentication_needed"
    REAUTHENTICATION_NOT_VALID = "reauthentication_not_valid"
    OTP_EXPIRED = "otp_expired"
    OTP_DISABLED = "otp_disabled"

    # -- rate limits
    OVER_REQUEST_RATE_LIMIT = "over_request_rate_limit"
    OVER_EMAIL_SEND_RATE_LIMIT = "over_email_send_rate_limit"
    OVER_SMS_SEND_RATE_LIMIT = "over_sms_send_rate_limit"

    # -- what is switched off (routes/disabled.py answers most of these)
    SIGNUP_DISABLED = "signup_disabled"
    EMAIL_PROVIDER_DISABLED = "email_provider_disabled"
    PHONE_PROVIDER_DISABLED = "phone_provider_disabled"
    ANONYMOUS_PROVIDER_DISABLED = "anonymous_provider_disabled"
    WEB3_PROVIDER_DISABLED = "web3_provider_disabled"
    PROVIDER_DISABLED = "provider_disabled"
    SAML_PROVIDER_DISABLED = "saml_provider_disabled"
    MANUAL_LINKING_DISABLED = "manual_linking_disabled"
    FEATURE_DISABLED = "feature_disabled"
    BAD_OAUTH_STATE = "bad_oauth_state"
    BAD_OAUTH_CALLBACK = "bad_oauth_callback"
    MFA_FACTOR_NOT_FOUND = "mfa_factor_not_found"
    MFA_FACTOR_NAME_CONFLICT = "mfa_factor_name_conflict"
    MFA_VERIFIED_FACTOR_EXISTS = "mfa_verified_factor_exists"
    MFA_VERIFICATION_FAILED = "mfa_verification_failed"
    MFA_CHALLENGE_EXPIRED = "mfa_challenge_expired"
    MFA_IP_ADDRESS_MISMATCH = "mfa_ip_address_mismatch"
    MFA_TOTP_VERIFY_NOT_ENABLED = "mfa_totp_verify_not_enabled"
    MFA_PHONE_VERIFY_NOT_ENABLED = "mfa_phone_verify_not_enabled"
    TOO_MANY_ENROLLED_MFA_FACTORS = "too_many_enrolled_mfa_factors"
    INSUFFICIENT_AAL = "insufficient_aal"
    MFA_TOTP_ENROLL_NOT_ENABLED = "mfa_totp_enroll_not_enabled"
    MFA_PHONE_ENROLL_NOT_ENABLED = "mfa_phone_enroll_not_enabled"
    MFA_WEBAUTHN_ENROLL_NOT_ENABLED = "mfa_webauthn_enroll_not_enabled"

    # -- the edge. Not GoTrue's codes: GoTrue's Go server and router answer
    # these without one of its own; we answer in its JSON and name the code
    # after the HTTP status.
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    REQUEST_ENTITY_TOO_LARGE = "request_entity_too_large"
    REQUEST_HEADER_FIELDS_TOO_LARGE = "request_header_fields_too_large"
