"""One table a sign-up writes, in the transaction that also queues its mail."""

from __future__ import annotations

from django.db import models


class Signup(models.Model):  # type: ignore[misc]  # Django ships no types
    email = models.CharField(max_length=200, unique=True)
    welcomed = models.BooleanField(default=False)
