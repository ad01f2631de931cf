"""The template mailer: GoTrue's mail types rendered into checked Messages.

It is the top of the client chain (template mailer -> validating client ->
background client -> SMTP client). It renders in the caller, before the
hand-off, so a template error or an unsafe subject reaches the request that
asked for the mail, and what is queued or stored is the final message.

Sections marked § are those of docs/gotrue.md (GoTrue's behaviour, as we read it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._headers import check_header
from .._message import Message, make_message_id
from ._cache import TemplateCache
from ._compile import compile_template
from ._defaults import DEFAULT_HTML, DEFAULT_SUBJECTS, DEFAULT_TEXT, MAIL_TYPES, MESSAGE_TYPES
from ._source import TemplateSource

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from .._client import MailClient
    from ._compile import CompiledTemplate
    from ._defaults import MailType

__all__ = ["MailData", "TemplateMailer"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class MailData:
    """The values a mail's templates can show (GoTrue's variables, §4.2).

    Each field is one template variable: ``email`` is ``{{ .Email }}``,
    ``confirmation_url`` is ``{{ .ConfirmationURL }}``, ``data`` (the user's
    metadata) is ``{{ .Data }}``, and so on; ``{{ .SiteURL }}`` comes from
    the mailer. Fields a mail type does not use stay empty.
    """

    email: str
    token: str = ""
    token_hash: str = ""
    confirmation_url: str = ""
    redirect_to: str = ""
    new_email: str = ""
    old_email: str = ""
    sending_to: str = ""
    phone: str = ""
    old_phone: str = ""
    provider: str = ""
    factor_type: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def variables(self, site_url: str) -> dict[str, object]:
        """The template dot: GoTrue's variable names to their values."""
        return {
            "SiteURL": site_url,
            "Email": self.email,
            "Token": self.token,
            "TokenHash": self.token_hash,
            "ConfirmationURL": self.confirmation_url,
            "RedirectTo": self.redirect_to,
            "NewEmail": self.new_email,
            "OldEmail": self.old_email,
            "SendingTo": self.sending_to,
            "Phone": self.phone,
            "OldPhone": self.old_phone,
            "Provider": self.provider,
            "FactorType": self.factor_type,
            "Data": self.data,
        }


@dataclass(frozen=True, slots=True)
class _Body:
    default: CompiledTemplate
    source: TemplateSource | None


class TemplateMailer:
    """Renders GoTrue's mail types and hands the messages to a client.

    Construct it once at start-up: every subject is compiled here, so a bad
    subject template or header name fails the start, not a request. Custom
    bodies are loaded on first use (or ahead, by a
    :class:`TemplateReloader`), and fall back to the default while their
    source cannot be loaded.

    Args:
        client: the client that receives each rendered :class:`Message`.
        site_url: ``{{ .SiteURL }}`` (``GOTRUE_SITE_URL``); also the base of
            relative template locations.
        message_id_domain: the domain of the ``Message-ID``; pass the
            domain of your From address (``GOTRUE_SMTP_ADMIN_EMAIL``).
        subjects: subject templates by mail type, replacing the defaults
            (``GOTRUE_MAILER_SUBJECTS_*``).
        templates: HTML body locations by mail type (a URL, a path or
            ``TemplateSource``; ``GOTRUE_MAILER_TEMPLATES_*``). A mail with a
            custom HTML body and no custom text body is sent as HTML only,
            so its two parts never disagree.
        text_templates: plain-text body locations by mail type.
        headers: extra headers (``GOTRUE_SMTP_HEADERS``): a value or a list
            of values per name, joined with ``", "``; ``$messageType`` in a
            value becomes the mail's message type; empty names and values
            are dropped; anything else than strings is refused.
        cache: the template cache (share one across rebuilt mailers).

    Raises:
        ValueError: an unknown mail type, a bad location or header name.
        TemplateError: a subject template is not valid.
    """

    def __init__(
        self,
        client: MailClient,
        *,
        site_url: str,
        message_id_domain: str = "localhost",
        subjects: Mapping[str, str] | None = None,
        templates: Mapping[str, str | os.PathLike[str] | TemplateSource] | None = None,
        text_templates: Mapping[str, str | os.PathLike[str] | TemplateSource] | None = None,
        headers: Mapping[str, str | Sequence[str]] | None = None,
        cache: TemplateCache | None = None,
    ) -> None:
        self.client = client
        self.site_url = site_url
        self.cache = TemplateCache() if cache is None else cache
        make_message_id(message_id_domain)  # refuse a bad domain now, not per mail
        self._domain = message_id_domain
        subjects = dict(subjects or {})
        sources = {
            True: self._sources(templates or {}),
            False: self._sources(text_templates or {}),
        }
        self._subjects: dict[str, CompiledTemplate] = {}
        self._bodies: dict[tuple[str, bool], _Body] = {}
        for kind in MAIL_TYPES:
            subject = subjects.pop(kind, None)
            self._subjects[kind] = (
                _default_subject(kind)
                if subject is None
                else compile_template(subject, name=f"{kind} subject", html=False)
            )
            for html in (True, False):
                body = _Body(_default(kind, html), sources[html].get(kind))
                self._bodies[kind, html] = body
                if body.source is not None:
                    self.cache.add(
                        body.source, name=body.default.name, html=html, fallback=body.default
                    )
        if subjects:
            raise ValueError(f"unknown mail type(s) in subjects: {', '.join(sorted(subjects))}")
        self._headers = _headers(headers or {})

    def _sources(
        self, locations: Mapping[str, str | os.PathLike[str] | TemplateSource]
    ) -> dict[str, TemplateSource]:
        unknown = sorted(set(locations) - set(MAIL_TYPES))
        if unknown:
            raise ValueError(f"unknown mail type(s) in templates: {', '.join(unknown)}")
        return {
            kind: value
            if isinstance(value, TemplateSource)
            else TemplateSource.parse(value, site_url=self.site_url)
            for kind, value in locations.items()
            if value
        }

    async def _load(self, body: _Body, html: bool) -> CompiledTemplate:
        if body.source is None:
            return body.default
        return await self.cache.get(
            body.source, name=body.default.name, html=html, fallback=body.default
        )

    async def render(self, kind: MailType, to: str, data: MailData) -> Message:
        """Render the ``kind`` mail for ``to`` into a checked :class:`Message`.

        Raises:
            TemplateError: a template failed to render.
            InvalidMessageError: the result cannot be sent safely, such as a
                subject that user data gave a line break (it names the field).
        """
        variables = data.variables(self.site_url)
        message_type = MESSAGE_TYPES[kind]
        html_body, text_body = self._bodies[kind, True], self._bodies[kind, False]
        html_template = await self._load(html_body, True)
        text_template: CompiledTemplate | None = None
        # A custom HTML body without a custom text body goes alone: the default
        # text would not say what it says. (While it cannot be loaded and the
        # default HTML stands in, the default text goes with it.)
        if text_body.source is not None or html_template is html_body.default:
            text_template = await self._load(text_body, False)
        return Message(
            to=to,
            subject=self._subjects[kind].render(variables),
            html=html_template.render(variables),
            text="" if text_template is None else text_template.render(variables),
            headers={
                name: value.replace("$messageType", message_type)
                for name, value in self._headers.items()
            },
            type=message_type,
            message_id=make_message_id(self._domain),
        )

    async def send(self, kind: MailType, to: str, data: MailData) -> Message:
        """Render the ``kind`` mail for ``to``, hand it to the client, return it.

        Rendering finishes before the hand-off, so its errors (see
        :meth:`render`) reach the caller whatever the client does next.
        """
        message = await self.render(kind, to, data)
        await self.client.send(message)
        return message


# The defaults are compiled once per process: rebuilding a mailer stays cheap.
@functools.cache
def _default_subject(kind: MailType) -> CompiledTemplate:
    return compile_template(DEFAULT_SUBJECTS[kind], name=f"{kind} subject", html=False)


@functools.cache
def _default(kind: MailType, html: bool) -> CompiledTemplate:
    source = (DEFAULT_HTML if html else DEFAULT_TEXT)[kind]
    return compile_template(source, name=f"{kind} {'html' if html else 'text'}", html=html)


def _headers(headers: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, values in headers.items():
        joined = ", ".join(value for value in _strings(name, values) if value)
        if name and joined:
            check_header(name, joined)
            result[name] = joined
    return result


def _strings(name: object, values: object) -> list[str]:
    # Read as untyped: the values often come from JSON. Refused, not skipped:
    # a header silently left out is a different mail from the one configured.
    listed = [values] if isinstance(values, str) else values
    if (
        not isinstance(name, str)
        or not isinstance(listed, list | tuple)
        or not all(isinstance(value, str) for value in listed)
    ):
        raise ValueError(f"header {name!r}: expected a string or a list of strings")
    return list(listed)
