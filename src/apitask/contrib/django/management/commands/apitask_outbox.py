"""``manage.py apitask_outbox list|stats|retry|purge``: the ``apitask outbox`` command,
on the database of ``APITASK["DATABASE"]``."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apitask.cli import _add_outbox_commands, _run_outbox_command
from apitask.contrib.django._database import database_url
from apitask.contrib.django._settings import load_settings


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = "Inspect and repair the apitask outbox: list, stats, retry, purge."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_outbox_commands(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        if namespace.outbox_command == "migrate":
            raise CommandError("the outbox tables are Django's here: run `manage.py migrate`")
        namespace.url = namespace.url or database_url(load_settings().database)
        self.stdout.ending = ""  # the shared code ends its own lines
        if _run_outbox_command(namespace, self.stdout):
            raise CommandError("the outbox command failed (see above)")
