"""GoTrue's mail types and our default subjects and bodies (Go template text).

The defaults are written in the same Go template syntax as custom templates,
so they double as examples to copy. Subjects are GoTrue's current ones
(§4.3). Bodies differ on purpose: every mail that carries a link also
carries the one-time code, so OTP flows (``verifyOtp``) work without a
custom template, and every mail has a plain-text part as well as HTML.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "DEFAULT_HTML",
    "DEFAULT_SUBJECTS",
    "DEFAULT_TEXT",
    "MAIL_TYPES",
    "MESSAGE_TYPES",
    "MailType",
]

MailType = Literal[
    "invite",
    "confirmation",
    "recovery",
    "magic_link",
    "email_change",
    "reauthentication",
    "password_changed_notification",
    "email_changed_notification",
    "phone_changed_notification",
    "identity_linked_notification",
    "identity_unlinked_notification",
    "mfa_factor_enrolled_notification",
    "mfa_factor_unenrolled_notification",
]
"""GoTrue's template keys; ``GOTRUE_MAILER_*_<KEY>`` uses them upper-cased."""

MAIL_TYPES: tuple[MailType, ...] = get_args(MailType)

MESSAGE_TYPES: dict[MailType, str] = {kind: kind for kind in MAIL_TYPES}
"""The message type GoTrue hands its client (``$messageType``, logs)."""
MESSAGE_TYPES["reauthentication"] = "reauthenticate"  # GoTrue kept the old name here

DEFAULT_SUBJECTS: dict[MailType, str] = {
    "invite": "You've been invited",
    "confirmation": "Confirm your email address",
    "recovery": "Reset your password",
    "magic_link": "Your sign-in link",
    "email_change": "Confirm your new email address",
    "reauthentication": "{{ .Token }} is your verification code",
    "password_changed_notification": "Your password was changed",
    "email_changed_notification": "Your email address was changed",
    "phone_changed_notification": "Your phone number was changed",
    "identity_linked_notification": "A new sign-in method was linked to your account",
    "identity_unlinked_notification": "A sign-in method was removed from your account",
    "mfa_factor_enrolled_notification": "A new verification method was added to your account",
    "mfa_factor_unenrolled_notification": "A verification method was removed from your account",
}

_IGNORE = "If you did not ask for this, you can ignore this email."
_NOT_YOU = "If this was not you, secure your account at {{ .SiteURL }} right away."
_CODE = "{{ if .Token }}Or enter this code: {{ .Token }}{{ end }}"

# Each body: the heading, the lines before the link, the link's label (or
# None: no link), and the lines after it. One spec makes both the HTML and
# the text part, so they can never say different things.
_Spec = tuple[str, tuple[str, ...], str | None, tuple[str, ...]]
_BODIES: dict[MailType, _Spec] = {
    "invite": (
        "You've been invited",
        ("You have been invited to create an account for {{ .Email }} at {{ .SiteURL }}.",),
        "Accept invitation",
        (_CODE,),
    ),
    "confirmation": (
        "Confirm your email address",
        ("Follow this link to confirm {{ .Email }}:",),
        "Confirm email address",
        (_CODE,),
    ),
    "recovery": (
        "Reset your password",
        ("Follow this link to reset the password for {{ .Email }}:",),
        "Reset password",
        (_CODE, _IGNORE),
    ),
    "magic_link": (
        "Your sign-in link",
        ("Follow this link to sign in as {{ .Email }}:",),
        "Sign in",
        (_CODE, "The link expires shortly and works only once."),
    ),
    "email_change": (
        "Confirm your new email address",
        (
            "Follow this link to change the email address of your account "
            "from {{ .Email }} to {{ .NewEmail }}:",
        ),
        "Confirm new email address",
        (_CODE, _IGNORE),
    ),
    "reauthentication": (
        "Confirm it's you",
        ("Enter this code to confirm it's you, {{ .Email }}: {{ .Token }}",),
        None,
        (_IGNORE,),
    ),
    "password_changed_notification": (
        "Your password was changed",
        ("The password of your account {{ .Email }} was changed.", _NOT_YOU),
        None,
        (),
    ),
    "email_changed_notification": (
        "Your email address was changed",
        (
            "The email address of your account was changed from {{ .OldEmail }} to {{ .Email }}.",
            _NOT_YOU,
        ),
        None,
        (),
    ),
    "phone_changed_notification": (
        "Your phone number was changed",
        (
            "The phone number of your account {{ .Email }} was changed "
            "from {{ .OldPhone }} to {{ .Phone }}.",
            _NOT_YOU,
        ),
        None,
        (),
    ),
    "identity_linked_notification": (
        "A new sign-in method was linked to your account",
        ("{{ .Provider }} was linked to your account {{ .Email }} as a way to sign in.", _NOT_YOU),
        None,
        (),
    ),
    "identity_unlinked_notification": (
        "A sign-in method was removed from your account",
        (
            "{{ .Provider }} was removed from the ways to sign in to your account {{ .Email }}.",
            _NOT_YOU,
        ),
        None,
        (),
    ),
    "mfa_factor_enrolled_notification": (
        "A new verification method was added to your account",
        (
            "A {{ .FactorType }} verification method was added to your account {{ .Email }}.",
            _NOT_YOU,
        ),
        None,
        (),
    ),
    "mfa_factor_unenrolled_notification": (
        "A verification method was removed from your account",
        (
            "A {{ .FactorType }} verification method was removed from your account {{ .Email }}.",
            _NOT_YOU,
        ),
        None,
        (),
    ),
}


def _html(spec: _Spec) -> str:
    heading, before, link, after = spec
    parts = [f"<h2>{heading}</h2>\n"]
    parts += [f"<p>{line}</p>\n" for line in before]
    if link is not None:
        parts.append(f'<p><a href="{{{{ .ConfirmationURL }}}}">{link}</a></p>\n')
    parts += [f"<p>{line}</p>\n" for line in after]
    return "".join(parts)


def _text(spec: _Spec) -> str:
    heading, before, link, after = spec
    lines = [heading, "", *before]
    if link is not None:
        lines.append(f"{link}: {{{{ .ConfirmationURL }}}}")
    return "\n".join([*lines, *after]) + "\n"


DEFAULT_HTML: dict[MailType, str] = {kind: _html(spec) for kind, spec in _BODIES.items()}
DEFAULT_TEXT: dict[MailType, str] = {kind: _text(spec) for kind, spec in _BODIES.items()}
