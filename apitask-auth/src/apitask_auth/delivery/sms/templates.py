"""The texts' templates: GoTrue's settings, GoTrue's defaults, Go-template syntax.

``GOTRUE_SMS_TEMPLATE`` renders sign-in, confirmation and phone-change codes;
``GOTRUE_MFA_PHONE_TEMPLATE`` renders MFA challenges. Both see one value,
``{{ .Code }}``, and default to GoTrue's ``Your code is {{ .Code }}``. They
are compiled once, at start (a bad one fails the start naming its variable:
config.py), by apitask's Go-template compiler, the one that renders mail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apitask.mail import compile_template

if TYPE_CHECKING:
    from apitask.mail import CompiledTemplate
    from apitask_auth.config import Settings
    from apitask_auth.delivery.texter import Purpose

__all__ = ["DEFAULT_TEMPLATE", "TextTemplates"]

DEFAULT_TEMPLATE = "Your code is {{ .Code }}"


class TextTemplates:
    """Render a text for a purpose and a code."""

    def __init__(self, settings: Settings) -> None:
        self._templates: dict[Purpose, CompiledTemplate] = {
            "otp": compile_template(
                settings.sms_template or DEFAULT_TEMPLATE, html=False, name="GOTRUE_SMS_TEMPLATE"
            ),
            "mfa": compile_template(
                settings.mfa_phone_template or DEFAULT_TEMPLATE,
                html=False,
                name="GOTRUE_MFA_PHONE_TEMPLATE",
            ),
        }

    def render(self, purpose: Purpose, code: str) -> str:
        """The text for ``purpose`` carrying ``code``.

        Raises:
            TemplateError: the template failed while rendering.
        """
        return self._templates[purpose].render({"Code": code})
