"""The outbox tables (outbox migrations 1 to 3) in the project's database."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations

from apitask.contrib.django._schema import apply_outbox_migrations, drop_outbox_tables, ours


def forward(apps: Any, schema_editor: Any) -> None:
    if ours(schema_editor.connection):
        apply_outbox_migrations(schema_editor.connection, upto=3)


def backward(apps: Any, schema_editor: Any) -> None:
    if ours(schema_editor.connection):
        drop_outbox_tables(schema_editor.connection)


class Migration(migrations.Migration):  # type: ignore[misc]  # Django ships no types
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[Any]] = [migrations.RunPython(forward, backward)]
