"""A small real Django project for the tests and the benchmark, configured by the environment.

``DJSITE_DATABASE``: ``sqlite:////abs/path.db`` or ``postgresql://user@host:port/db``;
``DJSITE_SMTP_PORT``: the SMTP server on 127.0.0.1; ``DJSITE_EMAIL_BACKEND``: the
project's ``EMAIL_BACKEND`` (apitask's by default); ``DJSITE_APITASK``: extra
``APITASK`` keys as JSON.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "djsite.urls"
WSGI_APPLICATION = "djsite.wsgi.application"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "apitask.contrib.django",
    "djsite.signups",
]
if os.environ.get("DJSITE_POST_OFFICE"):
    INSTALLED_APPS.append("post_office")
MIDDLEWARE: list[str] = []
# post-office renders every subject and body as a template, even without one.
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]


def _database(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path[1:] or parts.path}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {
    "default": _database(os.environ.get("DJSITE_DATABASE", "sqlite:////tmp/djsite.db")),
    # A second database, never given the outbox tables (APITASK["DATABASE"] is default).
    "other": _database(os.environ.get("DJSITE_OTHER_DATABASE", "sqlite:////tmp/djsite-other.db")),
}
EMAIL_BACKEND = os.environ.get("DJSITE_EMAIL_BACKEND", "apitask.contrib.django.EmailBackend")
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ.get("DJSITE_SMTP_PORT", "25"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = "Sign-ups <no-reply@djsite.test>"
SERVER_EMAIL = "server@djsite.test"
ADMINS = [("Ops", "ops@djsite.test")]
APITASK = {
    "REGISTRY": "djsite.tasks:registry",
    **json.loads(os.environ.get("DJSITE_APITASK", "{}")),
}
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "THREADS_PER_PROCESS": int(os.environ.get("DJSITE_POST_OFFICE_THREADS", "5")),
}
LOGGING_CONFIG = None
