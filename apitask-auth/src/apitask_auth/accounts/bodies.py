"""The JSON bodies clients receive: the user (``U``) and the session (``S``) of §7.

Pydantic models, so the routes can name them (``response_model=``) and
``/openapi.json`` documents them. A field marked "omitted when empty" in §7 is
left out of :meth:`~pydantic.BaseModel.model_dump` when it is None or empty,
as GoTrue's ``omitempty`` leaves it out; the schema shows such a field as not
required, of its type. Routes hand ``body.model_dump()`` to a ``JSONResponse``
themselves (they add headers), so FastAPI never re-serializes a body.

Timestamps are already text here (RFC 3339 with six fractional digits:
:func:`apitask_auth.accounts.users.iso`), the form GoTrue writes.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

__all__ = [
    "FactorBody",
    "GenerateLinkBody",
    "IdentityBody",
    "SessionBody",
    "SingleConfirmationBody",
    "UserBody",
    "UserListBody",
]


def _is_empty(value: object) -> bool:
    return not value


def _not_null(schema: dict[str, Any]) -> None:
    # Left out rather than null: the field's schema is its type alone, with no default.
    schema.pop("default", None)
    choices = schema.pop("anyOf", None)
    if choices is not None:
        schema.update(next(choice for choice in choices if choice != {"type": "null"}))


# RFC 3339 text; the schema says so.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
# A field GoTrue leaves out when it is empty (§7's "*").
_OMITTED_WHEN_EMPTY: Any = Field(default=None, exclude_if=_is_empty, json_schema_extra=_not_null)

# The models' docstrings are their descriptions in /openapi.json: written for clients.


class IdentityBody(BaseModel):
    """One of the user's identities."""

    identity_id: str
    id: str = Field(description="The provider's id of the user (the user id for `email`).")
    user_id: str
    identity_data: dict[str, Any]
    provider: str
    last_sign_in_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    email: str


class FactorBody(BaseModel):
    """One of the user's MFA factors (never its secret)."""

    id: str
    created_at: Timestamp
    updated_at: Timestamp
    status: str = Field(description='"unverified" until its first verify, then "verified".')
    friendly_name: str | None = _OMITTED_WHEN_EMPTY
    factor_type: str = Field(description='"totp" or "phone".')
    phone: str = Field(description='The phone factor\'s number (E.164 without "+"), else "".')
    last_challenged_at: Timestamp | None


class UserBody(BaseModel):
    """A user, as GoTrue writes one: no secret; optional fields only when set."""

    # The field order is the order on the wire (U in §7).
    id: str
    aud: str
    role: str
    email: str = Field(description='"" when the user has no address.')
    phone: str = Field(description='"" when the user has no phone number.')
    email_confirmed_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    invited_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    phone_confirmed_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    confirmation_sent_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    confirmed_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    recovery_sent_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    new_email: str | None = _OMITTED_WHEN_EMPTY
    email_change_sent_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    new_phone: str | None = _OMITTED_WHEN_EMPTY
    phone_change_sent_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    reauthentication_sent_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    last_sign_in_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any]
    identities: list[IdentityBody]
    factors: list[FactorBody] | None = _OMITTED_WHEN_EMPTY
    created_at: Timestamp
    updated_at: Timestamp
    banned_until: Timestamp | None = _OMITTED_WHEN_EMPTY
    deleted_at: Timestamp | None = _OMITTED_WHEN_EMPTY
    is_anonymous: bool


class SessionBody(BaseModel):
    """The tokens of a sign-in, and its user."""

    # S in §7. GoTrue's optional fields (provider_token, weak_password...) are not
    # declared: this service never sends them.
    access_token: str
    token_type: str = Field(description='Always "bearer".')
    expires_in: int = Field(description="Seconds the access token is valid for.")
    expires_at: int = Field(description="When the access token expires, in Unix seconds.")
    refresh_token: str
    user: UserBody


class SingleConfirmationBody(BaseModel):
    """The answer to the first of the two confirmations of a secure e-mail change
    (its `code` is a string, "200")."""

    # §3.8: POST /verify, secure e-mail change.
    msg: str
    code: str


class UserListBody(BaseModel):
    """One page of users (the X-Total-Count and Link headers tell the rest)."""

    users: list[UserBody]
    aud: str


class GenerateLinkBody(UserBody):
    """The user, and the link and code a mail would carry."""

    action_link: str
    email_otp: str
    hashed_token: str
    verification_type: str
    redirect_to: str
