from __future__ import annotations

from django.apps import AppConfig


class SignupsConfig(AppConfig):  # type: ignore[misc]
    name = "djsite.signups"
    default_auto_field = "django.db.models.AutoField"
