"""Outbox migration 5 (a job's history, the listing indexes) in the project's database."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations

from apitask.contrib.django._schema import apply_outbox_migrations, ours


def forward(apps: Any, schema_editor: Any) -> None:
    if ours(schema_editor.connection):
        apply_outbox_migrations(schema_editor.connection, upto=5)


class Migration(migrations.Migration):  # type: ignore[misc]  # Django ships no types
    dependencies: ClassVar[list[tuple[str, str]]] = [("apitask", "0002_search_indexes")]
    # Backwards: 0001's backward drops the tables, these with them.
    operations: ClassVar[list[Any]] = [migrations.RunPython(forward, migrations.RunPython.noop)]
