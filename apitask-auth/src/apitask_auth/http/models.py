"""Request bodies, with GoTrue's field names.

Strict types, so a value of the wrong JSON type is a 400 ``bad_json`` as with
Go's decoder; unknown fields are ignored, as GoTrue does.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "AdminFactorParams",
    "AdminUserParams",
    "ChallengeFactorParams",
    "DeleteUserParams",
    "EnrollFactorParams",
    "GenerateLinkParams",
    "InviteParams",
    "MagicLinkParams",
    "OtpParams",
    "RecoverParams",
    "ResendParams",
    "SignupParams",
    "TokenParams",
    "UserUpdateParams",
    "VerifyFactorParams",
    "VerifyParams",
]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class SignupParams(_Body):
    """POST /signup."""

    email: str | None = None
    phone: str | None = None
    password: str | None = None
    data: dict[str, Any] | None = None
    channel: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class VerifyParams(_Body):
    """POST /verify."""

    type: str | None = None
    token: str | None = None
    token_hash: str | None = None
    email: str | None = None
    phone: str | None = None
    redirect_to: str | None = None


class TokenParams(_Body):
    """POST /token, every grant's fields."""

    email: str | None = None
    phone: str | None = None
    password: str | None = None
    refresh_token: str | None = None
    auth_code: str | None = None
    code_verifier: str | None = None


class InviteParams(_Body):
    """POST /invite."""

    email: str | None = None
    data: dict[str, Any] | None = None


class GenerateLinkParams(_Body):
    """POST /admin/generate_link."""

    type: str | None = None
    email: str | None = None
    new_email: str | None = None
    password: str | None = None
    data: dict[str, Any] | None = None
    redirect_to: str | None = None


class AdminUserParams(_Body):
    """POST /admin/users and PUT /admin/users/{id}."""

    id: str | None = None
    aud: str | None = None
    role: str | None = None
    email: str | None = None
    phone: str | None = None
    password: str | None = None
    password_hash: str | None = None
    email_confirm: bool | None = None
    phone_confirm: bool | None = None
    user_metadata: dict[str, Any] | None = None
    app_metadata: dict[str, Any] | None = None
    ban_duration: str | None = None


class DeleteUserParams(_Body):
    """DELETE /admin/users/{id}."""

    should_soft_delete: bool = False


class RecoverParams(_Body):
    """POST /recover."""

    email: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class MagicLinkParams(_Body):
    """POST /magiclink."""

    email: str | None = None
    data: dict[str, Any] | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class OtpParams(_Body):
    """POST /otp."""

    email: str | None = None
    phone: str | None = None
    create_user: bool = True
    data: dict[str, Any] | None = None
    channel: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class ResendParams(_Body):
    """POST /resend."""

    type: str | None = None
    email: str | None = None
    phone: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class UserUpdateParams(_Body):
    """PUT /user."""

    email: str | None = None
    password: str | None = None
    current_password: str | None = None
    nonce: str | None = None
    data: dict[str, Any] | None = None
    app_metadata: dict[str, Any] | None = None
    phone: str | None = None
    channel: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None


class EnrollFactorParams(_Body):
    """POST /factors."""

    friendly_name: str | None = None
    factor_type: str | None = None
    issuer: str | None = None
    phone: str | None = None


class ChallengeFactorParams(_Body):
    """POST /factors/{factor_id}/challenge (the body may be absent)."""

    channel: str | None = None


class VerifyFactorParams(_Body):
    """POST /factors/{factor_id}/verify."""

    challenge_id: str | None = None
    code: str | None = None


class AdminFactorParams(_Body):
    """PUT /admin/users/{user_id}/factors/{factor_id}."""

    friendly_name: str | None = None
    phone: str | None = None
