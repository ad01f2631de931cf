"""TemplateMailer: every GoTrue mail type rendered into a checked Message, then handed on."""

from __future__ import annotations

import asyncio
import html
import re
from typing import TYPE_CHECKING, Any, get_args

import pytest

import apitask
from apitask import TaskCounters
from apitask.mail import (
    BackgroundClient,
    InvalidMessageError,
    MailClient,
    MailData,
    MailType,
    RecordingClient,
    TemplateCache,
    TemplateError,
    TemplateMailer,
    TemplateSource,
)

from ._template_server import TemplateServer, template_server

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["template_server"]  # the fixture, imported for pytest

SITE = "https://app.example.com"
LINK = "https://auth.example.com/verify?token=pkce_9f8e7d&type=signup&redirect_to=https://app.example.com/welcome"
TOKEN = "482913"
METADATA = {"name": "Ann Lee", "plan": "team"}
TOKEN_MAILS: tuple[MailType, ...] = (
    "invite",
    "confirmation",
    "recovery",
    "magic_link",
    "email_change",
)


def realistic(kind: MailType) -> MailData:
    """What the service passes for ``kind`` (GoTrue §4.2)."""
    common: dict[str, Any] = {"email": "ann@example.com", "data": METADATA}
    if kind in TOKEN_MAILS:
        common |= {
            "token": TOKEN,
            "token_hash": "pkce_9f8e7d",
            "confirmation_url": LINK,
            "redirect_to": f"{SITE}/welcome",
        }
    extra: dict[str, dict[str, Any]] = {
        "email_change": {"new_email": "ann@new.example", "sending_to": "ann@new.example"},
        "reauthentication": {"token": TOKEN},
        "email_changed_notification": {"old_email": "ann@old.example"},
        "phone_changed_notification": {"phone": "+15550100", "old_phone": "+15550199"},
        "identity_linked_notification": {"provider": "github"},
        "identity_unlinked_notification": {"provider": "google"},
        "mfa_factor_enrolled_notification": {"factor_type": "totp"},
        "mfa_factor_unenrolled_notification": {"factor_type": "phone"},
    }
    return MailData(**common, **extra.get(kind, {}))


# What each mail must show besides the recipient's address: (subject, values).
EXPECTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "invite": ("You've been invited", (SITE,)),
    "confirmation": ("Confirm your email address", ()),
    "recovery": ("Reset your password", ()),
    "magic_link": ("Your sign-in link", ()),
    "email_change": ("Confirm your new email address", ("ann@new.example",)),
    "reauthentication": (f"{TOKEN} is your verification code", (TOKEN,)),
    "password_changed_notification": ("Your password was changed", (SITE,)),
    "email_changed_notification": ("Your email address was changed", ("ann@old.example",)),
    "phone_changed_notification": ("Your phone number was changed", ("+15550100", "+15550199")),
    "identity_linked_notification": (
        "A new sign-in method was linked to your account",
        ("github",),
    ),
    "identity_unlinked_notification": (
        "A sign-in method was removed from your account",
        ("google",),
    ),
    "mfa_factor_enrolled_notification": (
        "A new verification method was added to your account",
        ("totp",),
    ),
    "mfa_factor_unenrolled_notification": (
        "A verification method was removed from your account",
        ("phone",),
    ),
}


def make_mailer(client: MailClient | None = None, **options: Any) -> TemplateMailer:
    options.setdefault("site_url", SITE)
    options.setdefault("message_id_domain", "mail.example.com")
    return TemplateMailer(client or RecordingClient(), **options)


@pytest.mark.parametrize("kind", get_args(MailType))
async def test_every_mail_type_renders_its_variables_in_both_parts(kind: MailType) -> None:
    client = RecordingClient()
    mailer = make_mailer(client, headers={"X-Mail-Type": ["$messageType"]})
    message = await mailer.send(kind, "ann@example.com", realistic(kind))
    assert client.messages == [message]
    subject, values = EXPECTED[kind]
    assert message.subject == subject
    assert message.to == "ann@example.com"
    expected_type = "reauthenticate" if kind == "reauthentication" else kind
    assert message.type == expected_type
    assert dict(message.headers) == {"X-Mail-Type": expected_type}
    assert re.fullmatch(r"<[0-9a-f]+\.[0-9a-f]{16}@mail\.example\.com>", message.message_id)
    for value in ("ann@example.com", *values):
        assert value in message.text
        assert html.escape(value) in message.html
    assert message.html.startswith("<h2>")
    assert "{{" not in message.html + message.text


@pytest.mark.parametrize("kind", TOKEN_MAILS)
async def test_default_token_mails_carry_both_the_link_and_the_code(kind: MailType) -> None:
    message = await make_mailer().render(kind, "ann@example.com", realistic(kind))
    # The link, attribute-escaped in HTML and verbatim in text; the OTP in both.
    assert f'href="{html.escape(LINK)}"' in message.html
    assert LINK in message.text
    assert f"Or enter this code: {TOKEN}" in message.html
    assert f"Or enter this code: {TOKEN}" in message.text


async def test_a_link_mail_without_a_code_leaves_the_code_line_out() -> None:
    data = MailData(email="ann@example.com", confirmation_url=LINK)
    message = await make_mailer().render("magic_link", "ann@example.com", data)
    assert "code" not in message.text
    assert LINK in message.text


async def test_email_change_goes_to_each_address_with_its_own_token() -> None:
    """Secure e-mail change: the same mail type, once per recipient (§4.2)."""
    mailer = make_mailer()
    for to, token in (("ann@example.com", "111111"), ("ann@new.example", "222222")):
        data = MailData(
            email="ann@example.com",
            new_email="ann@new.example",
            sending_to=to,
            token=token,
            confirmation_url=f"{SITE}/verify?token={token}",
        )
        message = await mailer.render("email_change", to, data)
        assert message.to == to
        assert token in message.text
        assert "from ann@example.com to ann@new.example" in message.text


async def test_subjects_are_overridable_templates() -> None:
    mailer = make_mailer(
        subjects={"recovery": "{{ .Data.name }}, reset your {{ .SiteURL }} password"}
    )
    message = await mailer.render("recovery", "ann@example.com", realistic("recovery"))
    assert message.subject == f"Ann Lee, reset your {SITE} password"
    # Not HTML: a subject shows "&" and "<" as they are.
    data = MailData(email="a@example.com", data={"name": "Tom & <Jerry>"})
    assert (await mailer.render("recovery", "a@example.com", data)).subject.startswith(
        "Tom & <Jerry>,"
    )


async def test_user_data_cannot_inject_a_header_through_a_subject() -> None:
    client = RecordingClient()
    mailer = make_mailer(client, subjects={"confirmation": "Welcome {{ .Data.name }}"})
    for hostile in ("Ann\r\nBcc: victim@example.net", "Ann\nX-Evil: 1", "Ann\x00", "Ann\u2028"):
        data = MailData(email="ann@example.com", data={"name": hostile})
        with pytest.raises(InvalidMessageError, match=r"^subject contains the control character"):
            await mailer.send("confirmation", "ann@example.com", data)
    assert client.messages == []


async def test_user_data_cannot_inject_html_into_a_default_body() -> None:
    data = MailData(email="ann@example.com", provider='<img src=x onerror="alert(1)">')
    message = await make_mailer().render("identity_linked_notification", "ann@example.com", data)
    assert "<img" not in message.html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in message.html
    assert '<img src=x onerror="alert(1)">' in message.text


async def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(TemplateError, match=r"template 'invite subject', line 1, column 4"):
        make_mailer(subjects={"invite": "{{ printf .Email }}"})
    with pytest.raises(ValueError, match=r"unknown mail type.*in subjects: signup"):
        make_mailer(subjects={"signup": "x"})
    with pytest.raises(ValueError, match=r"unknown mail type.*in templates: magiclink"):
        make_mailer(templates={"magiclink": "https://x.example/t"})
    with pytest.raises(InvalidMessageError, match="is set by the message itself"):
        make_mailer(headers={"Subject": "x"})
    with pytest.raises(InvalidMessageError, match="header X-A contains the control character"):
        make_mailer(headers={"X-A": ["ok\r\nBcc: x@evil.test"]})
    with pytest.raises(InvalidMessageError, match="not a domain"):
        make_mailer(message_id_domain="")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": ["1", 2]},  # what json.loads gives for {"X-A": ["1", 2]}
        {"X-A": [None]},
        {"X-A": 1},
        {1: "x"},
    ],
)
def test_headers_of_the_wrong_type_are_refused_not_ignored(headers: Any) -> None:
    """A header left out silently would send another mail than the one configured."""
    with pytest.raises(ValueError, match="expected a string or a list of strings"):
        make_mailer(headers=headers)


async def test_headers_follow_gotrue_smtp_headers() -> None:
    mailer = make_mailer(
        headers={
            "X-Mail-Kind": ["auth-$messageType", "v2"],
            "X-Single": "one",
            "X-Empty-Values": ["", ""],
            "": ["dropped"],
        }
    )
    message = await mailer.render("magic_link", "ann@example.com", realistic("magic_link"))
    assert dict(message.headers) == {"X-Mail-Kind": "auth-magic_link, v2", "X-Single": "one"}


async def test_custom_html_from_a_file_sends_html_only_unless_a_text_body_is_given(
    tmp_path: Path,
) -> None:
    custom = tmp_path / "recovery.html"
    text = tmp_path / "recovery.txt"
    await asyncio.to_thread(
        custom.write_text,
        '<a href="{{ .ConfirmationURL }}">Reset</a> {{ .Token }} {{ .Data.name }}',
    )
    await asyncio.to_thread(text.write_text, "Reset: {{ .ConfirmationURL }}\n")
    data = realistic("recovery")
    message = await make_mailer(templates={"recovery": custom}).render(
        "recovery", "ann@example.com", data
    )
    assert message.html == f'<a href="{html.escape(LINK)}">Reset</a> {TOKEN} Ann Lee'
    assert message.text == ""
    both = make_mailer(templates={"recovery": custom}, text_templates={"recovery": str(text)})
    message = await both.render("recovery", "ann@example.com", data)
    assert message.text == f"Reset: {LINK}\n"
    # A custom text body alone keeps the default HTML.
    only_text = make_mailer(text_templates={"recovery": TemplateSource("file", str(text))})
    message = await only_text.render("recovery", "ann@example.com", data)
    assert message.text == f"Reset: {LINK}\n"
    assert "Reset your password" in message.html


async def test_custom_templates_from_urls_share_the_cache_and_fall_back(
    template_server: TemplateServer,
) -> None:
    template_server.serve("/invite.html", "<p>Join {{ .SiteURL }}: {{ .ConfirmationURL }}</p>")
    cache = TemplateCache()
    mailer = make_mailer(
        site_url=template_server.base,
        cache=cache,
        templates={
            "invite": "invite.html",  # relative: on the site URL, as GoTrue does
            "confirmation": template_server.url("/missing.html"),  # 404: the default
            "recovery": "",  # empty: not configured
        },
    )
    message = await mailer.render("invite", "ann@example.com", realistic("invite"))
    assert message.html == f"<p>Join {template_server.base}: {html.escape(LINK)}</p>"
    message = await mailer.render("confirmation", "ann@example.com", realistic("confirmation"))
    assert "Confirm email address" in message.html
    # The default text part too: the HTML part is the default after all.
    assert "Confirm email address" in message.text
    # A rebuilt mailer (config reload) with the same cache does not fetch again.
    rebuilt = make_mailer(
        site_url=template_server.base, cache=cache, templates={"invite": "invite.html"}
    )
    await rebuilt.render("invite", "ann@example.com", realistic("invite"))
    assert template_server.count("/invite.html") == 1


async def test_a_template_error_reaches_the_caller_before_the_hand_off(tmp_path: Path) -> None:
    custom = tmp_path / "invite.html"
    await asyncio.to_thread(custom.write_text, "{{ .Data.company.name }}")
    client = RecordingClient()
    mailer = make_mailer(client, templates={"invite": custom})
    with pytest.raises(TemplateError, match="template 'invite html': rendering failed"):
        await mailer.send("invite", "ann@example.com", realistic("invite"))
    assert client.messages == []


REAL_WORLD_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Confirm your signup</title>
  <style>
    body { font-family: sans-serif; } .button { background: #3ecf8e; color: #fff; }
  </style>
  <!--[if mso]><style>.button { padding: 0; }</style><![endif]-->
</head>
<body>
  <table role="presentation" width="100%"><tr><td>
    <img src="{{ .SiteURL }}/logo.png" alt="Logo" width="120">
    <h2>Confirm your signup{{ with .Data.name }}, {{ . }}{{ end }}</h2>
    <p>Follow this link to confirm {{ .Email }}:</p>
    <p><a class="button" href="{{ .SiteURL }}/auth/confirm?token_hash={{ .TokenHash }}&type=email&next={{ .RedirectTo }}">Confirm your mail</a></p>
    {{- if .Token }}
    <p>Or enter the code: <strong>{{ .Token }}</strong></p>
    {{- end }}
  </td></tr></table>
</body>
</html>
"""  # noqa: E501 - the link line is as users write it


async def test_a_real_world_supabase_template_works_unmodified(tmp_path: Path) -> None:
    """A full document: doctype, CSS, an Outlook conditional comment, a table layout."""
    path = tmp_path / "confirmation.html"
    await asyncio.to_thread(path.write_text, REAL_WORLD_TEMPLATE)
    mailer = make_mailer(templates={"confirmation": path})
    message = await mailer.render("confirmation", "ann@example.com", realistic("confirmation"))
    assert '<img src="https://app.example.com/logo.png"' in message.html
    assert "<h2>Confirm your signup, Ann Lee</h2>" in message.html
    assert (
        'href="https://app.example.com/auth/confirm?token_hash=pkce_9f8e7d&type=email'
        '&next=https%3a%2f%2fapp.example.com%2fwelcome"'
    ) in message.html
    assert (
        "</a></p>\n    <p>Or enter the code: <strong>482913</strong></p>\n  </td>" in message.html
    )
    assert "body { font-family: sans-serif; }" in message.html
    assert "<!--[if mso]>" in message.html


async def test_in_the_client_chain_a_template_error_reaches_the_request_not_the_task(
    tmp_path: Path,
) -> None:
    """TemplateMailer -> BackgroundClient in a request scope: render first, then hand off."""
    broken = tmp_path / "invite.html"
    await asyncio.to_thread(broken.write_text, "{{ .Data.company.name }}")
    inbox = RecordingClient()
    background = BackgroundClient(inbox, counters=TaskCounters())
    mailer = make_mailer(background, templates={"invite": broken})
    async with apitask.scope():
        sent = await mailer.send("recovery", "ann@example.com", realistic("recovery"))
        with pytest.raises(TemplateError):
            await mailer.send("invite", "ann@example.com", realistic("invite"))
    # The scope waited for the one task there was: the recovery mail, as rendered.
    assert inbox.messages == [sent]
