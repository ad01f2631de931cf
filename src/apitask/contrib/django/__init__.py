"""apitask in a Django project: the outbox in the project's database, and a mail backend.

Add ``"apitask.contrib.django"`` to ``INSTALLED_APPS`` and run ``manage.py
migrate``: the outbox tables are created in the database of
``APITASK["DATABASE"]`` (``"default"``). ``EMAIL_BACKEND =
"apitask.contrib.django.EmailBackend"`` turns every ``send_mail`` into a
durable job written in the caller's transaction; ``manage.py apitask_worker``
sends them. See docs/django.md.

Needs Django (``pip install apitask[django]``).
"""

from __future__ import annotations

from ..._exports import lazy_names as _lazy_names

__all__ = ["EmailBackend", "get_outbox", "get_registry", "in_thread"]

# Lazy: Django imports this package (INSTALLED_APPS) before its settings and
# apps are ready; the backend and the outbox are loaded when first named.
__getattr__ = _lazy_names(
    __name__,
    {
        "EmailBackend": "._mail",
        "get_outbox": "._outbox",
        "get_registry": "._outbox",
        "in_thread": "._threads",
    },
    extra="django",
)
