"""``APITASK["EMAIL_BACKEND"] = "apitask.mail.SMTPClient"``: mail sent on the worker's loop.

Instead of a Django backend in a thread per send, the worker hands each
stored message to apitask's :class:`~apitask.mail.SMTPClient`
(:meth:`~apitask.mail.SMTPClient.send_raw`): pooled connections, no thread
hop, the same error classes as apitask's own mail. It reads Django's own
settings, as Django's SMTP backend does: ``EMAIL_HOST``, ``EMAIL_PORT``,
``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``, ``EMAIL_USE_TLS`` (STARTTLS
required), ``EMAIL_USE_SSL`` (implicit TLS), ``EMAIL_TIMEOUT``. One client
per event loop (the worker's), made at the first mail, with as many
connections as the worker runs jobs at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from apitask.mail import SMTPClient

__all__ = ["POOLED_BACKEND", "close_client", "pooled_client", "set_pool_size", "smtp_options"]

POOLED_BACKEND = "apitask.mail.SMTPClient"
_DEFAULT_TIMEOUT = 30.0  # EMAIL_TIMEOUT None means no limit in Django; ours needs one

_pool_size: int | None = None
_client: tuple[asyncio.AbstractEventLoop, SMTPClient] | None = None


def smtp_options() -> dict[str, Any]:
    """The :class:`SMTPClient` arguments Django's ``EMAIL_*`` settings give.

    Raises:
        ImproperlyConfigured: the ``mail`` extra is missing, or a setting is
            one the client cannot honour; the message names the setting.
    """
    if importlib.util.find_spec("aiosmtplib") is None:
        raise ImproperlyConfigured(
            f"APITASK['EMAIL_BACKEND'] is {POOLED_BACKEND!r}, which needs aiosmtplib: "
            "install apitask[mail]"
        )
    use_tls, use_ssl = bool(settings.EMAIL_USE_TLS), bool(settings.EMAIL_USE_SSL)
    if use_tls and use_ssl:
        raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive; set one")
    for name in ("EMAIL_SSL_CERTFILE", "EMAIL_SSL_KEYFILE"):
        if getattr(settings, name, None):
            raise ImproperlyConfigured(
                f"{name} (a client certificate) is not supported with APITASK['EMAIL_BACKEND'] "
                f"= {POOLED_BACKEND!r}; use Django's SMTP backend there"
            )
    timeout = settings.EMAIL_TIMEOUT
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ImproperlyConfigured(f"EMAIL_TIMEOUT must be a positive number, got {timeout!r}")
    from apitask.mail import InvalidMessageError
    from apitask.mail._smtp._mime import parse_sender

    try:
        parse_sender(settings.DEFAULT_FROM_EMAIL)
    except InvalidMessageError as exc:
        raise ImproperlyConfigured(f"DEFAULT_FROM_EMAIL: {exc}") from None
    return {
        "host": settings.EMAIL_HOST,
        "port": settings.EMAIL_PORT,
        "sender": settings.DEFAULT_FROM_EMAIL,  # unused by send_raw: each mail has its own
        "username": settings.EMAIL_HOST_USER or None,
        "password": (settings.EMAIL_HOST_PASSWORD or None) if settings.EMAIL_HOST_USER else None,
        "tls": "implicit" if use_ssl else "starttls" if use_tls else "none",
        "timeout": float(timeout or _DEFAULT_TIMEOUT),
    }


def set_pool_size(size: int | None) -> None:
    """Open at most ``size`` connections (the worker's concurrency; ``None``:
    ``APITASK["THREADS"]``), in clients made from now on."""
    global _pool_size
    _pool_size = size


def pooled_client() -> SMTPClient:
    """This event loop's client, made at the first call."""
    global _client
    loop = asyncio.get_running_loop()
    if _client is None or _client[0] is not loop:
        from apitask.mail import SMTPClient

        from ._settings import load_settings

        size = _pool_size or load_settings().threads
        _client = (loop, SMTPClient(pool_size=size, **smtp_options()))
    return _client[1]


async def close_client() -> None:
    """QUIT this loop's pooled connections (the worker stopped)."""
    global _client
    if _client is not None and _client[0] is asyncio.get_running_loop():
        client, _client = _client[1], None
        await client.aclose()
