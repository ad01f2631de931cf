"""JSON logs: a task a request started logs with that request's X-Request-Id."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from apitask.mail import Message, PermanentMailError
from apitask_auth.cli import log_handler, log_level
from apitask_auth.config import Settings, load_settings

from .conftest import email

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .conftest import Service


class Refusing:
    """Refuses every mail (a 550); :attr:`tried` is set at the first attempt."""

    def __init__(self) -> None:
        self.tried = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.tried.set()  # the task logs its failure before anyone wakes
        raise PermanentMailError("550 mailbox unavailable", code=550)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The service's own handler (GOTRUE_LOG_FORMAT=json) on apitask's loggers."""
    handler = log_handler(settings_with())
    out = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    logger = logging.getLogger("apitask")
    logger.addHandler(handler)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def settings_with(**overrides: Any) -> Settings:
    return load_settings(
        env_file=None,
        site_url="http://localhost:3000",
        api_external_url="http://auth.test",
        jwt_secret="s" * 32,
        **overrides,
    )


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize("mode", ["request", "pool", "outbox"])
async def test_a_failing_mail_task_logs_the_request_id(
    make_service: Callable[..., Any], json_lines: io.StringIO, mode: str
) -> None:
    client = Refusing()
    svc: Service = await make_service(transport=client, mailer_delivery=mode)
    response = await svc.http.post(
        "/signup",
        json={"email": email(), "password": "secret-pw"},
        headers={"X-Request-Id": f"req-{mode}-42"},
    )
    assert response.status_code == 200
    await client.tried.wait()
    lines = [line for line in parsed(json_lines) if line.get("task_type") == "mailer.confirmation"]
    assert lines  # the mail task's own line, and the runner's
    assert {line["request_id"] for line in lines} == {f"req-{mode}-42"}
    assert {line["level"] for line in lines} == {"error"}


def test_text_format_and_logrus_level_names() -> None:
    settings = settings_with(log_format="text", log_level="warn")
    assert log_level(settings) == logging.WARNING
    handler = log_handler(settings)
    record = logging.makeLogRecord({"name": "apitask_auth", "msg": "hi", "levelname": "INFO"})
    assert handler.filter(record)
    assert handler.format(record) == "INFO apitask_auth: hi"
    assert log_level(settings_with()) == logging.INFO


def test_dev_mode_logs_text_lines_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --dev` is read by a person: text lines, not JSON; GOTRUE_LOG_FORMAT still wins."""
    monkeypatch.delenv("GOTRUE_LOG_FORMAT", raising=False)
    dev = load_settings(dev=True, env_file=None)
    assert dev.log_format == "text"
    record = logging.makeLogRecord(
        {
            "name": "apitask_auth",
            "msg": "applied migrations %s",
            "args": ([1, 2],),
            "levelname": "INFO",
        }
    )
    line = log_handler(dev).format(record)
    assert line == "INFO apitask_auth: applied migrations [1, 2]"
    assert settings_with().log_format == "json"
    monkeypatch.setenv("GOTRUE_LOG_FORMAT", "json")
    assert load_settings(dev=True, env_file=None).log_format == "json"
