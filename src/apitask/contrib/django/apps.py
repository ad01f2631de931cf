"""The Django app: label ``apitask``; its migrations create the outbox tables."""

from __future__ import annotations

from django.apps import AppConfig


class ApitaskConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    """``apitask.contrib.django`` in ``INSTALLED_APPS``."""

    name = "apitask.contrib.django"
    label = "apitask"
    verbose_name = "apitask outbox"

    def ready(self) -> None:
        # Read and check the settings at start, not at the first mail: a
        # typo in APITASK stops the project with a message naming the key.
        from django.core.signals import setting_changed

        from ._pooled import POOLED_BACKEND, smtp_options
        from ._settings import load_settings

        if load_settings().email_backend == POOLED_BACKEND:
            smtp_options()  # the EMAIL_* settings it reads, checked now too
        setting_changed.connect(_settings_changed, dispatch_uid="apitask.contrib.django")


def _settings_changed(*, setting: str, **kwargs: object) -> None:
    # override_settings(APITASK=..., DATABASES=...) in tests: rebuild the outbox.
    if setting in ("APITASK", "DATABASES"):
        from ._outbox import reset

        reset()
