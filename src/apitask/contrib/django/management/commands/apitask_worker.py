"""``manage.py apitask_worker``: run the outbox's jobs (mail included) until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apitask.cli import add_worker_arguments, run_worker_command
from apitask.contrib.django._database import database_url
from apitask.contrib.django._outbox import get_registry
from apitask.contrib.django._pooled import close_client, set_pool_size
from apitask.contrib.django._settings import load_settings
from apitask.contrib.django._threads import shutdown_threads, start_threads
from apitask.outbox import OutboxError, open_outbox


async def _pending(url: str) -> tuple[int, ...]:
    async with open_outbox(url) as outbox:
        return (await outbox.schema_status()).pending


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    help = (
        "Run apitask outbox jobs (mail sent with apitask's EmailBackend included), "
        "--concurrency at once; SIGTERM drains: no new claims, running jobs finish."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_worker_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        namespace = argparse.Namespace(**options)
        namespace.url = namespace.url or database_url(load_settings().database)
        try:
            pending = asyncio.run(_pending(namespace.url))
        except OutboxError as exc:
            raise CommandError(str(exc)) from None
        if pending and namespace.no_migrate:
            raise CommandError(
                f"the outbox tables lack migrations {list(pending)}: run `manage.py migrate "
                "apitask` (or drop --no-migrate to let the worker apply them)"
            )
        registry = get_registry()
        start_threads(namespace.concurrency)
        set_pool_size(namespace.concurrency)

        async def cleanup() -> None:
            await close_client()
            await asyncio.to_thread(shutdown_threads)

        if run_worker_command(namespace, registry, cleanup=cleanup):
            raise CommandError("the worker stopped on an error (see above)")
