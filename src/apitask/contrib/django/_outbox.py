"""The project's outbox and task registry, made once from the settings."""

from __future__ import annotations

import functools

from django.core.exceptions import ImproperlyConfigured

from ...cli import load_registry
from ...outbox import Outbox, TaskRegistry, open_store
from ._database import database_url
from ._settings import load_settings

__all__ = ["get_outbox", "get_registry", "reset"]


@functools.cache
def get_registry() -> TaskRegistry:
    """The project's registry (``APITASK["REGISTRY"]``) plus Django mail's task.

    Raises:
        ImproperlyConfigured: the registry cannot be loaded.
    """
    from ._mail import MAIL_TYPE, MailJob

    spec = load_settings().registry
    if spec is None:
        registry = TaskRegistry()
    else:
        try:
            registry = load_registry(spec)
        except ValueError as exc:
            raise ImproperlyConfigured(f"APITASK['REGISTRY']: {exc}") from None
    if registry.factory_for(MAIL_TYPE) is None:
        registry.register(MAIL_TYPE, MailJob.from_payload)
    return registry


@functools.cache
def get_outbox() -> Outbox:
    """The outbox in the database of ``APITASK["DATABASE"]``.

    Enqueue with ``get_outbox().enqueue_sync(connection, task)`` inside
    ``transaction.atomic()``.
    """
    return Outbox(open_store(database_url(load_settings().database)), get_registry())


def reset() -> None:
    """Forget the settings, the outbox and the registry (the settings changed: tests)."""
    load_settings.cache_clear()
    get_outbox.cache_clear()
    get_registry.cache_clear()
