"""GoTrue's mailer environment variables as :class:`TemplateMailer` arguments.

The library takes plain arguments; this maps an existing GoTrue
configuration onto them, so a service wires the mailer in one line::

    mailer = TemplateMailer(client, cache=cache, **template_mailer_options(os.environ))

Durations (``GOTRUE_MAILER_TEMPLATE_MAX_AGE`` and friends) are the service's
to parse; it passes them to :class:`TemplateCache` in seconds.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, TypedDict
from urllib.parse import urlsplit

from ._templates._defaults import MAIL_TYPES

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TemplateMailerOptions", "parse_smtp_headers", "template_mailer_options"]

logger = logging.getLogger("apitask.mail")


class TemplateMailerOptions(TypedDict):
    """Keyword arguments of :class:`TemplateMailer` read from GoTrue's variables."""

    site_url: str
    message_id_domain: str
    subjects: dict[str, str]
    templates: dict[str, str]
    headers: dict[str, list[str]]


def parse_smtp_headers(text: str) -> dict[str, list[str]]:
    """Parse ``GOTRUE_SMTP_HEADERS``: a JSON object of header name to values.

    As GoTrue does, invalid JSON (or JSON of another shape) is logged as a
    warning and ignored, and an empty text means no headers.
    """
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        logger.warning("GOTRUE_SMTP_HEADERS is not valid JSON, ignored: %s", exc)
        return {}
    if not isinstance(parsed, dict) or not all(
        isinstance(values, list) and all(isinstance(value, str) for value in values)
        for values in parsed.values()
    ):
        logger.warning("GOTRUE_SMTP_HEADERS must map header names to lists of strings, ignored")
        return {}
    return parsed


def template_mailer_options(env: Mapping[str, str]) -> TemplateMailerOptions:
    """Read ``GOTRUE_SITE_URL``, ``GOTRUE_SMTP_ADMIN_EMAIL``, ``GOTRUE_SMTP_HEADERS``,
    ``GOTRUE_MAILER_SUBJECTS_<KEY>`` and ``GOTRUE_MAILER_TEMPLATES_<KEY>``.

    The Message-ID domain is the admin e-mail's domain, else the site's
    host, else ``localhost``. Empty variables count as unset.
    """
    site_url = env.get("GOTRUE_SITE_URL", "")
    admin = env.get("GOTRUE_SMTP_ADMIN_EMAIL", "")
    domain = admin.rpartition("@")[2] if "@" in admin else urlsplit(site_url).hostname
    return {
        "site_url": site_url,
        "message_id_domain": domain or "localhost",
        "subjects": _by_type(env, "GOTRUE_MAILER_SUBJECTS_"),
        "templates": _by_type(env, "GOTRUE_MAILER_TEMPLATES_"),
        "headers": parse_smtp_headers(env.get("GOTRUE_SMTP_HEADERS", "")),
    }


def _by_type(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {kind: value for kind in MAIL_TYPES if (value := env.get(prefix + kind.upper(), ""))}
