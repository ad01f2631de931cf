"""``flask apitask worker``: the extension's command runs the outbox's jobs."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from flask import Flask, current_app

from apitask.contrib.flask import Apitask
from apitask.outbox import TaskRegistry, open_outbox

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from apitask import JSONValue

ran: list[tuple[str, str]] = []


class Note:
    """A durable task that records its payload and the app it ran in."""

    type = "t.note"

    def __init__(self, text: str) -> None:
        self.text = text

    def payload(self) -> Mapping[str, JSONValue]:
        return {"text": self.text}

    async def run(self) -> None:
        ran.append((self.text, current_app.name))


def make_registry() -> TaskRegistry:
    registry = TaskRegistry()
    registry.register("t.note", lambda type, payload: Note(str(payload["text"])))
    return registry


async def _enqueue(url: str, *texts: str) -> None:
    async with open_outbox(url) as outbox:
        await outbox.migrate()
        for text in texts:
            await outbox.enqueue(None, Note(text))


@pytest.mark.no_blockbuster  # the command runs its own event loop
def test_flask_apitask_worker_runs_the_jobs_in_the_app_context(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    asyncio.run(_enqueue(url, "one", "two"))
    app = Flask("notes")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    Apitask(app, registry=make_registry)
    ran.clear()
    result = app.test_cli_runner().invoke(args=["apitask", "worker", "--until-empty"])
    assert result.exit_code == 0, result.output
    assert sorted(ran) == [("one", "notes"), ("two", "notes")]


@pytest.mark.no_blockbuster
def test_the_url_and_registry_come_from_the_extension_or_the_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    app = Flask("bare")
    extension = Apitask()
    extension.init_app(app)
    runner = app.test_cli_runner()
    missing = runner.invoke(args=["apitask", "worker", "--until-empty"])
    assert missing.exit_code == 2
    assert "set APITASK_DATABASE_URL" in missing.output
    # No registry: an empty one; --url wins; a failed start is exit status 1.
    bad = runner.invoke(args=["apitask", "worker", "--until-empty", "--url", "sqlite:///"])
    assert bad.exit_code == 1
    extension.url = url
    extension.registry = make_registry()
    asyncio.run(_enqueue(url, "three"))
    ran.clear()
    assert runner.invoke(args=["apitask", "worker", "--until-empty"]).exit_code == 0
    assert ran == [("three", "bare")]
    app.config["APITASK_DATABASE_URL"] = "sqlite:///elsewhere.db"
    with app.app_context():
        assert extension.database_url() == url  # url= first
        extension.url = None
        assert extension.database_url() == "sqlite:///elsewhere.db"
