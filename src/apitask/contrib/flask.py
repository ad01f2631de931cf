"""``flask apitask worker``: the outbox worker as a command of a Flask app.

::

    from apitask.contrib.flask import Apitask

    Apitask(app, registry=make_registry)  # or apitask.init_app(app) in a factory

then ``flask --app myapp apitask worker --concurrency 10``. The options are
``apitask worker``'s (``--help`` lists them); the database is ``url=``, else
``app.config["APITASK_DATABASE_URL"]``, else Flask-SQLAlchemy's
``SQLALCHEMY_DATABASE_URI``, unless ``--url`` is given. The registry (a
:class:`~apitask.outbox.TaskRegistry`, or a function returning one) is
built inside the app context, so its tasks may read ``current_app``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

from ..cli import add_worker_arguments, run_worker_command
from ..outbox import TaskRegistry

if TYPE_CHECKING:
    from collections.abc import Callable

    from flask import Flask

__all__ = ["Apitask", "cli"]

cli = AppGroup("apitask", help="apitask's outbox worker.")


class Apitask:
    """Registers ``flask apitask worker`` on an app.

    Args:
        app: the app (or call :meth:`init_app` later).
        registry: the stored tasks' registry, or a function returning it.
        url: the outbox database (default: see the module docstring).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        registry: TaskRegistry | Callable[[], TaskRegistry] | None = None,
        url: str | None = None,
    ) -> None:
        self.registry = registry
        self.url = url
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Add the ``apitask`` command group to ``app``."""
        app.extensions["apitask"] = self
        app.cli.add_command(cli)

    def database_url(self) -> str | None:
        """The outbox database for the current app, or ``None``."""
        config = current_app.config
        url = (
            self.url or config.get("APITASK_DATABASE_URL") or config.get("SQLALCHEMY_DATABASE_URI")
        )
        return str(url) if url else None

    def build_registry(self) -> TaskRegistry:
        """The registry, built now if a function was given."""
        registry = self.registry() if callable(self.registry) else self.registry
        return registry if registry is not None else TaskRegistry()


@cli.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,  # --help is the worker parser's, with every option
)
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the outbox's jobs until SIGTERM (apitask worker's options)."""
    parser = argparse.ArgumentParser(prog="flask apitask worker")
    add_worker_arguments(parser)
    args = parser.parse_args(ctx.args)
    extension: Apitask = current_app.extensions["apitask"]
    args.url = args.url or extension.database_url()
    if not args.url:
        raise click.UsageError(
            "no database: pass --url, or set APITASK_DATABASE_URL (or SQLALCHEMY_DATABASE_URI)"
        )
    ctx.exit(run_worker_command(args, extension.build_registry()))
