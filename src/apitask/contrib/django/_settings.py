"""The ``APITASK`` setting: one dict, read and checked once, every error naming its key."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = ["DEFAULT_EMAIL_BACKEND", "Settings", "load_settings"]

DEFAULT_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
OUR_BACKEND = "apitask.contrib.django.EmailBackend"


@dataclass(frozen=True, slots=True)
class Settings:
    """``settings.APITASK``, checked.

    Attributes:
        database: the alias in ``DATABASES`` holding the outbox tables.
        email_backend: the backend the worker sends mail through: a Django
            backend's dotted path, or ``"apitask.mail.SMTPClient"`` for
            apitask's pooled client, configured by Django's ``EMAIL_*``
            settings (see ``_pooled``).
        registry: ``module:attribute`` of a TaskRegistry with the project's
            own durable tasks, or ``None``.
        threads: threads that run blocking work (mail sends, ORM tasks).
    """

    database: str = "default"
    email_backend: str = DEFAULT_EMAIL_BACKEND
    registry: str | None = None
    threads: int = 10


_KEYS = {"DATABASE", "EMAIL_BACKEND", "REGISTRY", "THREADS"}


def _text(config: dict[str, Any], key: str, default: str | None) -> str | None:
    value = config.get(key, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise ImproperlyConfigured(f"APITASK[{key!r}] must be a non-empty string, got {value!r}")
    return value


@functools.cache
def load_settings() -> Settings:
    """Read ``settings.APITASK`` (absent: every default), once: each mail asks.

    ``override_settings(APITASK=..., DATABASES=...)`` makes it read them again
    (the app's ``setting_changed`` receiver clears it).

    Raises:
        ImproperlyConfigured: not a dict, an unknown key, or a bad value; the
            message names the key and what it should be.
    """
    config = getattr(settings, "APITASK", {})
    if not isinstance(config, dict):
        raise ImproperlyConfigured(f"APITASK must be a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"APITASK has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    database = _text(config, "DATABASE", "default")
    assert database is not None  # it has a default
    if database not in settings.DATABASES:
        raise ImproperlyConfigured(
            f"APITASK['DATABASE'] is {database!r}, which is not in DATABASES "
            f"({', '.join(sorted(settings.DATABASES))}); set it to one of those aliases"
        )
    backend = _text(config, "EMAIL_BACKEND", DEFAULT_EMAIL_BACKEND)
    assert backend is not None
    if backend == OUR_BACKEND:
        raise ImproperlyConfigured(
            f"APITASK['EMAIL_BACKEND'] is {OUR_BACKEND!r}: the worker would queue each mail "
            f"again; set it to the backend that really sends (default {DEFAULT_EMAIL_BACKEND!r})"
        )
    threads = config.get("THREADS", 10)
    if type(threads) is not int or threads < 1:
        raise ImproperlyConfigured(f"APITASK['THREADS'] must be an integer >= 1, got {threads!r}")
    return Settings(database, backend, _text(config, "REGISTRY", None), threads)
